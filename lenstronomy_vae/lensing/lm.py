"""The 'LM' fitting step: bounded Levenberg–Marquardt on noise-weighted image residuals.

The residual vector is lenstronomy's own χ²: (data − model)·√(mask / (C_D(model) + |model error|))
over the image pixels, with the linear amplitudes solved by lenstronomy at every evaluation,
plus one row (p − mean)/σ for every Gaussian prior of ``kwargs_likelihood`` on a free parameter
(the standard-normal latent prior among them). So ½|r|² is −logL of lenstronomy's likelihood.

Derivatives: with respect to the latents of 'VAE' components they come from the decoder
(forward-mode autodiff), pushed through lenstronomy's lensing, interpolation, PSF and pixel
machinery (the image is linear in the decoded stamp), with the amplitudes' own response
projected out (variable projection, Kaufman's approximation). The other free parameters (lens,
centres, scale, rotation) are differentiated by one-sided finite differences of the full
residuals, which include the re-solved amplitudes.
"""

import time

import numpy as np
from threadpoolctl import threadpool_limits

from lenstronomy_vae.lensing.profile import VAEProfile

# Finite-difference step of non-latent parameters, relative to max(|p|, 1) in the parameter's units
# (arcsec for positions): far above float64 round-off, far below any physical scale.
_FD_STEP = 1e-6

# Names under which lenstronomy's Param class lists the parameters of each light component.
_LIGHT_KINDS = {"source": ("SourceModel", "kwargs_source", "source_light", "prior_source"),
                "lens_light": ("LensLightModel", "kwargs_lens_light", "lens_light", "prior_lens_light")}
_PRIOR_LABELS = {"prior_lens": "lens", **{kind[3]: kind[2] for kind in _LIGHT_KINDS.values()}}
_PRIOR_KWARGS = {"prior_lens": "kwargs_lens", **{kind[3]: kind[1] for kind in _LIGHT_KINDS.values()}}


def levenberg_marquardt(residuals, jacobian, x0, lower, upper, max_iterations=50, tolerance=1e-6,
                        damping=1e-3):
    """Minimise ½|r(x)|² inside the box [lower, upper] (Marquardt's diagonal scaling).

    Steps that leave the box are clipped onto it; a parameter sitting on a bound and pushed
    outwards by the gradient is frozen for that step.

    Args:
        residuals: function x (p,) → r (n,).
        jacobian: function x (p,) → ∂r/∂x (n, p), evaluated at accepted points only.
        x0: start (p,), clipped into the box.
        lower, upper: bounds (p,).
        max_iterations: accepted-step budget.
        tolerance: stop when an accepted step lowers |r|² by less than this fraction.
        damping: initial Marquardt parameter λ.

    Returns:
        dict: ``x``, ``chi2`` (= |r|²), ``chi2_history`` (per accepted step, starting at x0),
        ``iterations``, ``evaluations``, ``converged``.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    x = np.clip(np.asarray(x0, float), lower, upper)
    r = residuals(x)
    chi2 = float(r @ r)
    history, evaluations, converged = [chi2], 1, False
    for _ in range(max_iterations):
        J = jacobian(x)
        gradient = J.T @ r
        hessian = J.T @ J
        at_bound = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
        free = ~at_bound
        scaling = np.maximum(np.diag(hessian), 1e-12 * max(np.diag(hessian).max(), 1e-300))
        while True:
            step = np.zeros_like(x)
            h = hessian[np.ix_(free, free)] + damping * np.diag(scaling[free])
            step[free] = np.linalg.solve(h, -gradient[free])
            trial = np.clip(x + step, lower, upper)
            r_trial = residuals(trial)
            evaluations += 1
            chi2_trial = float(r_trial @ r_trial)
            if np.isfinite(chi2_trial) and chi2_trial < chi2:
                damping = max(damping / 3.0, 1e-9)
                break
            damping *= 4.0
            if damping > 1e10:
                return _lm_result(x, chi2, history, evaluations, converged=True)
        improvement = (chi2 - chi2_trial) / chi2
        x, r, chi2 = trial, r_trial, chi2_trial
        history.append(chi2)
        if improvement < tolerance:
            converged = True
            break
    return _lm_result(x, chi2, history, evaluations, converged)


def _lm_result(x, chi2, history, evaluations, converged):
    return {"x": x, "chi2": chi2, "chi2_history": history, "iterations": len(history) - 1,
            "evaluations": evaluations, "converged": converged}


class ImageResiduals:
    """Noise-weighted residuals of a single-band FittingSequence, and their Jacobian.

    Args:
        fitting_sequence: a lenstronomy ``FittingSequence`` with ``multi_band_type='single-band'``.

    Raises:
        ValueError: no imaging likelihood, or another multi-band type.
    """

    def __init__(self, fitting_sequence):
        likelihood = fitting_sequence.likelihood_class
        image_likelihood = getattr(likelihood, "image_likelihood", None)
        if image_likelihood is None:
            raise ValueError("'LM' fits imaging data, and this FittingSequence has no image likelihood")
        self.im_sim = image_likelihood.imSim
        if self.im_sim.type not in ("single-band", "single-band-multi-model"):
            raise ValueError(
                f"'LM' supports multi_band_type 'single-band'; this FittingSequence uses {self.im_sim.type!r}"
            )
        self.param = fitting_sequence.param_class
        self.param_names = self.param.num_param()[1]
        data = self.im_sim.Data
        self._data = data.data
        self._mask = self.im_sim.likelihood_mask
        self._priors = self._gaussian_priors(fitting_sequence._updateManager.kwargs_likelihood)
        self._latent_columns = self._vae_latent_columns()

    def _gaussian_priors(self, kwargs_likelihood):
        """(argument index, mean, sigma) of each Gaussian prior on a free parameter."""
        index = {name: i for i, name in enumerate(self.param_names)}
        priors = []
        for key, label in _PRIOR_LABELS.items():
            for k, name, mean, sigma in kwargs_likelihood.get(key) or []:
                arg = index.get(f"{name}_{label}{k}")
                if arg is not None:
                    priors.append((arg, float(mean), float(sigma)))
        return priors

    def _vae_latent_columns(self):
        """[(kind, k, profile, [(latent index, argument index), ...])] for every VAE component."""
        index = {name: i for i, name in enumerate(self.param_names)}
        columns = []
        for kind, (model_attribute, _, label, _) in _LIGHT_KINDS.items():
            for k, profile in enumerate(getattr(self.im_sim, model_attribute).func_list):
                if isinstance(profile, VAEProfile):
                    pairs = [(i, index[f"z_{i}_{label}{k}"]) for i in range(profile.latent_dim)
                             if f"z_{i}_{label}{k}" in index]
                    if pairs:
                        columns.append((kind, k, profile, pairs))
        return columns

    def _solve(self, args):
        """kwargs (with solved amplitudes), model image and pixel weights √(mask / variance)."""
        kwargs = self.param.args2kwargs(np.asarray(args), bijective=False)
        kwargs_solve = {key: kwargs.get(key) for key in ("kwargs_lens", "kwargs_source", "kwargs_lens_light",
                                                          "kwargs_ps", "kwargs_extinction", "kwargs_special")}
        model, model_error, _, _ = self.im_sim.image_linear_solve(**kwargs_solve)
        variance = self.im_sim.Data.C_D_model(model) + np.abs(model_error)
        weights = np.sqrt(self._mask / variance)
        return kwargs_solve, model, weights

    def _residual_vector(self, args, model, weights):
        image_rows = ((self._data - model) * weights)[self._mask]
        prior_rows = [(args[i] - mean) / sigma for i, mean, sigma in self._priors]
        return np.concatenate([image_rows, prior_rows])

    def __call__(self, args):
        """Residual vector: masked image pixels, then one row per Gaussian prior."""
        _, model, weights = self._solve(args)
        return self._residual_vector(args, model, weights)

    def jacobian(self, args, lower, upper):
        """∂r/∂args (n, p): decoder derivatives for VAE latents, finite differences otherwise."""
        args = np.asarray(args, float)
        kwargs, model, weights = self._solve(args)
        r0 = self._residual_vector(args, model, weights)
        J = np.zeros((len(r0), len(args)))
        latent_args = set()
        for kind, k, profile, pairs in self._latent_columns:
            latent_args.update(arg for _, arg in pairs)
            derivative_images = self._latent_derivative_images(kind, k, profile, pairs, kwargs)
            for (_, arg), image in zip(pairs, derivative_images):
                J[: self._mask.sum(), arg] = -(image * weights)[self._mask]
        if latent_args:
            image_rows = self._mask.sum()
            latent_list = sorted(latent_args)
            J[:image_rows, latent_list] = self._project_out_amplitudes(J[:image_rows, latent_list], kwargs, weights)
        for arg in range(len(args)):
            if arg in latent_args:
                continue
            step = _FD_STEP * max(abs(args[arg]), 1.0)
            if args[arg] + step > upper[arg]:
                step = -step
            shifted = args.copy()
            shifted[arg] += step
            J[:, arg] = (self(shifted) - r0) / step
        for row, (arg, _, sigma) in enumerate(self._priors, start=self._mask.sum()):
            if arg in latent_args:
                J[row, arg] = 1.0 / sigma
        return J

    def _latent_derivative_images(self, kind, k, profile, pairs, kwargs):
        """Model-image derivatives (H, W) with respect to each free latent of component k."""
        model_attribute, kwargs_key, label, _ = _LIGHT_KINDS[kind]
        component = kwargs[kwargs_key][k]
        latents = {name: value for name, value in component.items() if name.startswith("z_")}
        _, stamp_jacobian = profile.stamp_jacobian(**latents)
        images = []
        for latent, _ in pairs:
            with profile.substituted_stamp(stamp_jacobian[..., latent]):
                if kind == "source":
                    image = self.im_sim.source_surface_brightness(
                        kwargs["kwargs_source"], kwargs["kwargs_lens"], kwargs["kwargs_extinction"],
                        kwargs["kwargs_special"], unconvolved=False, k=k)
                else:
                    image = self.im_sim.lens_surface_brightness(kwargs["kwargs_lens_light"], unconvolved=False, k=k)
            images.append(image)
        return images

    def _project_out_amplitudes(self, columns, kwargs, weights):
        """Remove from weighted derivative columns their part along the weighted linear responses.

        The amplitudes are re-solved at every evaluation, so a change of the image that one
        amplitude can absorb does not change the residuals (variable projection).
        """
        response = self.im_sim.linear_response_matrix(
            kwargs["kwargs_lens"], kwargs["kwargs_source"], kwargs["kwargs_lens_light"], kwargs["kwargs_ps"],
            kwargs["kwargs_extinction"], kwargs["kwargs_special"])
        # Rows of the response matrix are linear components over the masked pixels (row-major).
        weighted = response.T * weights[self._mask][:, None]
        basis, _ = np.linalg.qr(weighted)
        return columns - basis @ (basis.T @ columns)


def run_lm(fitting_sequence, max_iterations=50, tolerance=1e-6, damping=1e-3):
    """Run 'LM' from the current parameter state of a FittingSequence and return its result.

    Honours fixed parameters (they are not in the argument vector), the bounds of
    ``kwargs_params`` and the Gaussian priors of ``kwargs_likelihood``.

    Returns:
        (kwargs_result, info): the best-fit keyword arguments (as PSO's) and a dict with
        ``chi2`` (= −2 logL), ``chi2_history``, ``iterations``, ``evaluations``, ``converged``,
        ``seconds`` and ``param_names``.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        # Products here are small: a second BLAS thread only spins, and stalls when the core is busy.
        return _run_lm(fitting_sequence, max_iterations, tolerance, damping)


def _run_lm(fitting_sequence, max_iterations, tolerance, damping):
    start = time.perf_counter()
    residuals = ImageResiduals(fitting_sequence)
    param = residuals.param
    x0 = param.kwargs2args(**fitting_sequence._updateManager.parameter_state)
    lower, upper = (np.asarray(bound, float) for bound in param.param_limits())
    result = levenberg_marquardt(
        residuals, lambda x: residuals.jacobian(x, lower, upper), x0, lower, upper,
        max_iterations=max_iterations, tolerance=tolerance, damping=damping,
    )
    kwargs_result = param.args2kwargs(result["x"], bijective=True)
    info = {key: result[key] for key in ("chi2", "chi2_history", "iterations", "evaluations", "converged")}
    info.update(seconds=time.perf_counter() - start, param_names=residuals.param_names)
    return kwargs_result, info
