"""The 'LM' fitting step: bounded Levenberg–Marquardt on noise-weighted image residuals.

The minimiser is scipy's ``least_squares`` (method 'trf', a trust-region Levenberg–Marquardt with
reflective bounds) on the residuals and Jacobian below; see :func:`levenberg_marquardt`. It replaced
a hand-written Levenberg–Marquardt loop, which ``benchmarks/fit_time.py`` keeps for comparison: on 60
galaxy stamps and 3 lenses it reached the same χ² (within 0.3 %) on 58, a lower one on the other 5
(by 1 to 16 %; never a higher one by more than 0.25 %), for about 15 % more time per fit (median
0.38 s against 0.32 s).

The residual vector is lenstronomy's own −2 logL as a sum of squares: (data − model)·√(mask /
(C_D(model) + |model error|)) over the image pixels, with the linear amplitudes solved by lenstronomy
at every evaluation; while ``check_positive_flux`` is on, one row that is √(2·10⁸) when a solved
amplitude is negative (lenstronomy's penalty of 10⁸ in logL) and 0 otherwise; and (p − mean)/σ for
every Gaussian prior of ``kwargs_likelihood`` (``prior_lens``, ``prior_source``, ``prior_lens_light``,
``prior_extinction``, ``prior_special``; the standard-normal latent prior among them), on free and
fixed parameters alike. So ½|r|² is −logL of lenstronomy's likelihood. Likelihood terms this does not
model, and point sources, are refused before fitting (:func:`check_supported`).

Derivatives: with respect to the latents of 'VAE' components they come from the decoder
(forward-mode autodiff), pushed through lenstronomy's lensing, interpolation, PSF and pixel
machinery (the image is linear in the decoded stamp), with the amplitudes' own response
projected out (variable projection, Kaufman's approximation). The other free parameters (lens,
centres, scale, rotation) are differentiated by one-sided finite differences of the full
residuals, which include the re-solved amplitudes. The positive-flux row is piecewise constant:
its derivative is 0.
"""

import contextlib
import time

import numpy as np
from scipy.optimize import least_squares

from lenstronomy_vae.lensing.profile import VAEProfile

# Finite-difference step of non-latent parameters, relative to max(|p|, 1) in the parameter's units
# (arcsec for positions): far above float64 round-off, far below any physical scale.
_FD_STEP = 1e-6

# least_squares's stall: trial steps shorter than this × (this + |x|), in the parameters' own units,
# end the fit; far above float64 round-off (2·10⁻¹⁶ relative), far below any step that matters.
_STALL_XTOL = 1e-10

# Below this predicted decrease of χ² a stall is a minimum: no parameter would move by 0.1σ. The
# Jacobian is approximate (finite differences, Kaufman's variable projection), so a purely relative
# test (10⁻⁶ of χ²) would call converged fits stalls (0.003 predicted on a χ² of 573, reduced χ² 0.995).
_STALL_CHI2 = 0.01

# lenstronomy subtracts 10⁸ from logL when a solved amplitude is negative (check_positive_flux):
# a residual row of √(2·10⁸) adds the same 2·10⁸ to χ² = −2 logL.
_POSITIVE_FLUX_PENALTY = np.sqrt(2e8)

# The keyword arguments of lenstronomy's image model that Param.args2kwargs returns.
_MODEL_KWARGS = ("kwargs_lens", "kwargs_source", "kwargs_lens_light", "kwargs_ps", "kwargs_extinction",
                 "kwargs_special")

# Names under which lenstronomy's Param class lists the parameters of each light component.
_LIGHT_KINDS = {"source": ("SourceModel", "kwargs_source", "source_light"),
                "lens_light": ("LensLightModel", "kwargs_lens_light", "lens_light")}

# Gaussian priors of kwargs_likelihood → the model keyword arguments they constrain. Entries are
# [index, name, mean, σ], except prior_special's [name, mean, σ] (kwargs_special is one dict).
_GAUSSIAN_PRIORS = {"prior_lens": "kwargs_lens", "prior_source": "kwargs_source",
                    "prior_lens_light": "kwargs_lens_light", "prior_extinction": "kwargs_extinction",
                    "prior_special": "kwargs_special"}

# Every kwargs_likelihood key of lenstronomy's Likelihood falls in exactly one of the three groups
# below (the registration checks this at import, so a new lenstronomy term cannot pass unnoticed).
# Modelled: the image χ² with its mask (image_likelihood=False leaves nothing to fit: refused), the
# positive-flux penalty and the Gaussian priors; check_bounds, on or off, because 'LM' never leaves
# the bounds, where its penalty would apply; bands_compute has no effect in 'single-band' mode.
MODELLED_LIKELIHOOD_KEYS = frozenset({"image_likelihood", "image_likelihood_mask_list", "bands_compute",
                                      "check_bounds", "check_positive_flux", *_GAUSSIAN_PRIORS})
# Settings that act only through a refused term below, and two keys lenstronomy 1.14 accepts but
# never reads (prior_special_kde, prior_extinction_kde).
INERT_LIKELIHOOD_KEYS = frozenset({
    "image_position_uncertainty", "source_position_tolerance", "source_position_sigma", "max_num_images",
    "linear_prior", "time_delay_measurement_bool_list", "bimodal_time_delay_measurement", "kwargs_flux_compute",
    "kin_lens_idx", "kin_lens_light_idx", "tracer_likelihood_mask", "prior_special_kde", "prior_extinction_kde",
})
# Terms 'LM' does not model: refused unless off (False, None or empty).
UNMODELLED_LIKELIHOOD_TERMS = {
    "source_marg": "the marginalisation over the linear amplitudes",
    "astrometric_likelihood": "the astrometric point-source likelihood",
    "image_position_likelihood": "the image-position likelihood",
    "source_position_likelihood": "the source-position likelihood",
    "force_no_add_image": "the additional-image penalty",
    "restrict_image_number": "the image-number penalty",
    "time_delay_likelihood": "the time-delay likelihood",
    "flux_ratio_likelihood": "the flux-ratio likelihood",
    "kinematic_2d_likelihood": "the 2-D kinematic likelihood",
    "tracer_likelihood": "the tracer likelihood",
    "custom_logL_addition": "a custom logL term",
    "kwargs_pixelbased": "the pixel-based (SLITronomy) solver",
    "prior_ps": "Gaussian priors on point-source parameters",
    **{f"prior_{kind}_kde": f"KDE priors on {kind.replace('_', ' ')} parameters"
       for kind in ("lens", "source", "lens_light", "ps")},
    **{f"prior_{kind}_lognormal": f"log-normal priors on {kind.replace('_', ' ')} parameters"
       for kind in ("lens", "source", "lens_light", "ps", "special", "extinction")},
}


def _is_off(value):
    """Whether a kwargs_likelihood value switches its term off: False, None or empty."""
    if value is None or value is False:
        return True
    try:
        return len(value) == 0
    except TypeError:
        return False


def check_supported(fitting_sequence):
    """Refuse a FittingSequence whose likelihood 'LM' would not reproduce.

    Raises:
        ValueError: point sources in the model, or a term of ``kwargs_likelihood`` that 'LM' does
            not model; the message names it and the lenstronomy steps that handle it.
    """
    manager = fitting_sequence._updateManager
    point_sources = manager.kwargs_model.get("point_source_model_list") or []
    if len(point_sources):
        raise ValueError(
            f"'LM' does not fit point sources yet (point_source_model_list {list(point_sources)}): their image "
            "positions and amplitudes are not modelled; fit with PSO, SIMPLEX or MCMC instead"
        )
    for key, value in manager.kwargs_likelihood.items():
        if key in UNMODELLED_LIKELIHOOD_TERMS and not _is_off(value):
            raise ValueError(
                f"'LM' does not model {UNMODELLED_LIKELIHOOD_TERMS[key]} (kwargs_likelihood[{key!r}] is set): "
                "switch it off for 'LM', or fit with PSO, SIMPLEX or MCMC instead"
            )


class _AcceptedStepBudgetSpent(Exception):
    """Raised from least_squares's Jacobian callback to stop the fit once the accepted-step budget is spent."""

    def __init__(self, x, r):
        super().__init__()
        self.x, self.r = x, r


def levenberg_marquardt(residuals, jacobian, x0, lower, upper, max_iterations=50, tolerance=1e-6):
    """Minimise ½|r(x)|² inside the box [lower, upper]: ``scipy.optimize.least_squares``, method 'trf'.

    'trf' is Moré's trust-region form of Levenberg–Marquardt, with Coleman–Li reflective handling
    of the bounds; ``x_scale='jac'`` scales the trust region like Marquardt's diagonal. Iterates
    stay strictly inside the box (a parameter pushed onto a bound ends within round-off of it). A
    trial step is accepted when it lowers |r|²; one with non-finite residuals shrinks the region.

    Stops, with ``converged``:

    * True when an accepted step lowers |r|² by less than ``tolerance`` (relative: scipy's
      ``ftol``, which also asks that the quadratic model predicted that decrease fairly well);
    * after a stall, when trial steps have shrunk below 10⁻¹⁰ × (|x| + 10⁻¹⁰) (``xtol``) without
      either: True only if the Gauss–Newton model at x predicts a decrease of |r|² below
      ``tolerance`` × |r|² or below 0.01 (no parameter would move by 0.1σ: a local minimum, as far
      as the approximate Jacobian tells); False if it predicts more (the residuals
      and their Jacobian disagree: a penalty wall such as lenstronomy's positive-flux check, a
      non-finite region, a wrong derivative);
    * False after ``max_iterations`` accepted steps, or after scipy's cap of 100 residual
      evaluations per parameter, or when the residuals at x0 are not finite.

    scipy's ``gtol`` is off: it is absolute, and |r|² has no natural scale here. The accepted-step
    budget is exact: trf evaluates the Jacobian once per accepted point, and the Jacobian callback
    stops the fit there (scipy's ``max_nfev`` counts rejected trials too, so no value of it is the
    same budget).

    Args:
        residuals: function x (p,) → r (n,).
        jacobian: function x (p,) → ∂r/∂x (n, p), evaluated at accepted points only.
        x0: start (p,), clipped into the box.
        lower, upper: bounds (p,), each lower bound below its upper bound.
        max_iterations: accepted-step budget.
        tolerance: relative decrease of |r|² under which the fit has converged.

    Returns:
        dict: ``x``, ``chi2`` (= |r|²), ``chi2_history`` (per accepted step, starting at x0),
        ``iterations`` (accepted steps), ``evaluations`` (of ``residuals``), ``converged``.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    x0 = np.clip(np.asarray(x0, float), lower, upper)
    history, last, evaluations = [], {}, 0

    def fun(x):
        nonlocal evaluations
        if not np.array_equal(x, last.get("x")):  # least_squares starts by re-evaluating x0
            last.update(x=x.copy(), r=residuals(x))
            evaluations += 1
        return last["r"]

    def jac(x):
        r = fun(x)  # trf asks for the Jacobian right after evaluating an accepted point: no new evaluation
        history.append(float(r @ r))
        if len(history) == max_iterations + 1:  # x0 and max_iterations accepted steps
            raise _AcceptedStepBudgetSpent(x.copy(), r)
        return jacobian(x)

    r0 = fun(x0)
    if not np.all(np.isfinite(r0)):
        return _lm_result(x0, float(r0 @ r0), [float(r0 @ r0)], evaluations, converged=False)
    try:
        result = least_squares(fun, x0, jac=jac, bounds=(lower, upper), method="trf", ftol=tolerance,
                               xtol=_STALL_XTOL, gtol=None, x_scale="jac", tr_solver="exact")
    except _AcceptedStepBudgetSpent as spent:
        return _lm_result(spent.x, history[-1], history, evaluations, converged=False)
    if result.status in (2, 4):  # ftol (and xtol)
        converged = True
    elif result.status == 3:  # xtol alone: a stall
        chi2 = float(result.fun @ result.fun)
        predicted = gauss_newton_gain(result.jac[:, result.active_mask == 0], result.fun) * chi2
        converged = bool(predicted < max(tolerance * chi2, _STALL_CHI2))
    else:  # 0: scipy's evaluation cap
        converged = False
    return _lm_result(result.x, history[-1], history, evaluations, converged)


def gauss_newton_gain(J, r):
    """Relative decrease of |r|² that the undamped Gauss–Newton step predicts: (|r|² − |r + J s|²) / |r|².

    Args:
        J: Jacobian (n, p) of the parameters free to move.
        r: residuals (n,).

    Returns:
        float: 0 with no free parameter or |r|² = 0; NaN for non-finite residuals.
    """
    chi2 = float(r @ r)
    if J.shape[1] == 0 or chi2 == 0.0:
        return 0.0
    if not (np.isfinite(chi2) and np.all(np.isfinite(J))):
        return float("nan")
    step = np.linalg.lstsq(J, -r, rcond=None)[0]
    predicted = r + J @ step
    return (chi2 - float(predicted @ predicted)) / chi2


def _lm_result(x, chi2, history, evaluations, converged):
    """The result dict of :func:`levenberg_marquardt`."""
    return {"x": x, "chi2": chi2, "chi2_history": history, "iterations": len(history) - 1,
            "evaluations": evaluations, "converged": converged}


class ImageResiduals:
    """Noise-weighted residuals of a single-band FittingSequence, and their Jacobian.

    Args:
        fitting_sequence: a lenstronomy ``FittingSequence`` with ``multi_band_type='single-band'``.

    Raises:
        ValueError: what :func:`check_supported` refuses; no imaging likelihood, another
            multi-band type, an interferometric likelihood, or ``linear_solver=False``.
    """

    def __init__(self, fitting_sequence):
        check_supported(fitting_sequence)
        likelihood = fitting_sequence.likelihood_class
        image_likelihood = getattr(likelihood, "image_likelihood", None)
        if image_likelihood is None:
            raise ValueError("'LM' fits imaging data, and this FittingSequence has no image likelihood")
        self.im_sim = image_likelihood.imSim
        if self.im_sim.type not in ("single-band", "single-band-multi-model"):
            raise ValueError(
                f"'LM' supports multi_band_type 'single-band'; this FittingSequence uses {self.im_sim.type!r}"
            )
        method = self.im_sim.Data.likelihood_method()
        if method != "diagonal":
            raise ValueError(f"'LM' fits the per-pixel ('diagonal') image likelihood; this data uses {method!r}")
        self.param = fitting_sequence.param_class
        if not self.param.linear_solver:
            raise ValueError("'LM' solves the linear amplitudes at every evaluation; this FittingSequence sets "
                             "linear_solver=False in kwargs_constraints")
        self.param_names = self.param.num_param()[1]
        self._data = self.im_sim.Data.data
        self._mask = self.im_sim.likelihood_mask
        self._image_rows = int(self._mask.sum())
        kwargs_likelihood = fitting_sequence._updateManager.kwargs_likelihood
        # lenstronomy applies the penalty only for the value True itself.
        self._check_positive_flux = kwargs_likelihood.get("check_positive_flux", False) is True
        self._priors = self._gaussian_priors(kwargs_likelihood)
        self._latent_columns = self._vae_latent_columns()
        self._latent_args = {(_LIGHT_KINDS[kind][1], k, f"z_{i}"): arg
                             for kind, k, _, pairs in self._latent_columns for i, arg in pairs}

    @staticmethod
    def _gaussian_priors(kwargs_likelihood):
        """[(model kwargs key, component index or None, name, mean, sigma)] of every Gaussian prior."""
        priors = []
        for key, kwargs_key in _GAUSSIAN_PRIORS.items():
            for prior in kwargs_likelihood.get(key) or []:
                k, name, mean, sigma = (None, *prior) if kwargs_key == "kwargs_special" else prior
                priors.append((kwargs_key, k, name, mean, sigma))
        return priors

    def _prior_rows(self, kwargs):
        """(p − mean)/σ of every Gaussian prior, one array per prior (array-valued parameters give several rows)."""
        rows = []
        for kwargs_key, k, name, mean, sigma in self._priors:
            value = kwargs[kwargs_key][name] if k is None else kwargs[kwargs_key][k][name]
            rows.append(np.ravel((np.asarray(value, float) - mean) / sigma))
        return rows

    def _vae_latent_columns(self):
        """[(kind, k, profile, [(latent index, argument index), ...])] for every VAE component."""
        index = {name: i for i, name in enumerate(self.param_names)}
        columns = []
        for kind, (model_attribute, _, label) in _LIGHT_KINDS.items():
            for k, profile in enumerate(getattr(self.im_sim, model_attribute).func_list):
                if isinstance(profile, VAEProfile):
                    pairs = [(i, index[f"z_{i}_{label}{k}"]) for i in range(profile.latent_dim)
                             if f"z_{i}_{label}{k}" in index]
                    if pairs:
                        columns.append((kind, k, profile, pairs))
        return columns

    def _evaluate(self, args):
        """Residuals at args; the kwargs with the solved amplitudes; pixel weights √(mask / variance);
        the number of rows of each prior."""
        kwargs = self.param.args2kwargs(np.asarray(args), bijective=False)
        kwargs = {key: kwargs.get(key) for key in _MODEL_KWARGS}
        # As in lenstronomy, the priors see the parameters before the linear solve sets the amplitudes.
        prior_rows = self._prior_rows(kwargs)
        model, model_error, _, _ = self.im_sim.image_linear_solve(**kwargs)
        variance = self.im_sim.Data.C_D_model(model) + np.abs(model_error)
        weights = np.sqrt(self._mask / variance)
        rows = [((self._data - model) * weights)[self._mask]]
        if self._check_positive_flux:
            positive = self.im_sim.check_positive_flux(kwargs_source=kwargs["kwargs_source"],
                                                       kwargs_lens_light=kwargs["kwargs_lens_light"],
                                                       kwargs_ps=kwargs["kwargs_ps"])
            rows.append([0.0 if positive else _POSITIVE_FLUX_PENALTY])
        return np.concatenate(rows + prior_rows), kwargs, weights, [len(row) for row in prior_rows]

    def __call__(self, args):
        """Residual vector: masked image pixels, the positive-flux row (if checked), then the prior rows."""
        return self._evaluate(args)[0]

    def jacobian(self, args, lower, upper):
        """∂r/∂args (n, p): decoder derivatives for VAE latents, finite differences otherwise."""
        args = np.asarray(args, float)
        r0, kwargs, weights, prior_sizes = self._evaluate(args)
        J = np.zeros((len(r0), len(args)))
        image_rows = self._image_rows
        latent_args = []
        for kind, k, profile, pairs in self._latent_columns:
            derivative_images = self._latent_derivative_images(kind, k, profile, pairs, kwargs)
            for (_, arg), image in zip(pairs, derivative_images):
                J[:image_rows, arg] = -(image * weights)[self._mask]
            latent_args += [arg for _, arg in pairs]
        if latent_args:
            J[:image_rows, latent_args] = self._project_out_amplitudes(J[:image_rows, latent_args], kwargs, weights)
            row = image_rows + int(self._check_positive_flux)
            for (kwargs_key, k, name, _, sigma), size in zip(self._priors, prior_sizes):
                arg = self._latent_args.get((kwargs_key, k, name))
                if arg is not None:
                    J[row:row + size, arg] = 1.0 / np.asarray(sigma, float)
                row += size
        for arg in range(len(args)):
            if arg in latent_args:
                continue
            step = _FD_STEP * max(abs(args[arg]), 1.0)
            if args[arg] + step > upper[arg]:
                step = -step
            shifted = args.copy()
            shifted[arg] += step
            J[:, arg] = (self(shifted) - r0) / step
        if self._check_positive_flux:
            J[image_rows] = 0.0  # the penalty row is piecewise constant
        return J

    def _latent_derivative_images(self, kind, k, profile, pairs, kwargs):
        """Model-image derivatives (H, W) with respect to each free latent of component k."""
        _, kwargs_key, _ = _LIGHT_KINDS[kind]
        component = kwargs[kwargs_key][k]
        latents = {name: value for name, value in component.items() if name.startswith("z_")}
        _, stamp_jacobian = profile.stamp_jacobian(**latents)
        images = []
        # Every image shares the lens and the positions: rays are shot and interpolation set up once.
        with _rays_shot_once(self.im_sim.LensModel), profile.positions_reused():
            for latent, _ in pairs:
                with profile.substituted_stamp(stamp_jacobian[..., latent]):
                    if kind == "source":
                        image = self.im_sim.source_surface_brightness(
                            kwargs_source=kwargs["kwargs_source"], kwargs_lens=kwargs["kwargs_lens"],
                            kwargs_extinction=kwargs["kwargs_extinction"], kwargs_special=kwargs["kwargs_special"],
                            unconvolved=False, k=k)
                    else:
                        image = self.im_sim.lens_surface_brightness(kwargs_lens_light=kwargs["kwargs_lens_light"],
                                                                    unconvolved=False, k=k)
                images.append(image)
        return images

    def _project_out_amplitudes(self, columns, kwargs, weights):
        """Remove from weighted derivative columns their part along the weighted linear responses.

        The amplitudes are re-solved at every evaluation, so a change of the image that one
        amplitude can absorb does not change the residuals (variable projection).
        """
        response = self.im_sim.linear_response_matrix(**kwargs)
        # Rows of the response matrix are linear components over the masked pixels (row-major).
        weighted = response.T * weights[self._mask][:, None]
        basis, _ = np.linalg.qr(weighted)
        return columns - basis @ (basis.T @ columns)


@contextlib.contextmanager
def _rays_shot_once(lens_model):
    """Within the block, ``lens_model.ray_shooting`` of the same x, y and lens keyword objects is computed once.

    "The same" lens keywords are the same dicts, in a list that may be new (a multi-band image
    model selects its band's lenses into a new list at every call). The arguments are held for the
    block, so their identities stay theirs; calls with further arguments go through unchanged.
    """
    shoot = lens_model.ray_shooting
    shot = {}

    def ray_shooting(x, y, kwargs, *args, **keywords):
        if args or keywords:
            return shoot(x, y, kwargs, *args, **keywords)
        key = (id(x), id(y), *map(id, kwargs or ()))
        if key not in shot:
            shot[key] = (x, y, kwargs, shoot(x, y, kwargs))
        return shot[key][3]

    own = vars(lens_model).get("ray_shooting")  # an instance's own function, if it has one, comes back after
    lens_model.ray_shooting = ray_shooting
    try:
        yield
    finally:
        if own is None:
            del lens_model.ray_shooting
        else:
            lens_model.ray_shooting = own


def run_lm(fitting_sequence, max_iterations=50, tolerance=1e-6):
    """Run 'LM' from the current parameter state of a FittingSequence and return its result.

    Honours fixed parameters (they are not in the argument vector), the bounds of
    ``kwargs_params``, and of ``kwargs_likelihood`` the image mask, ``check_positive_flux`` and the
    Gaussian priors (see the module docstring).

    Args:
        fitting_sequence: a single-band lenstronomy ``FittingSequence``.
        max_iterations: accepted-step budget; a fit that spends it has not converged.
        tolerance: relative χ² decrease of an accepted step under which the fit has converged.

    Returns:
        (kwargs_result, info): the best-fit keyword arguments (as PSO's) and a dict with
        ``chi2`` (= −2 logL), ``chi2_history``, ``iterations``, ``evaluations``, ``converged``
        (see :func:`levenberg_marquardt`), ``seconds`` and ``param_names``.

    Raises:
        ValueError: a setup 'LM' would not fit faithfully (see :class:`ImageResiduals`).
    """
    start = time.perf_counter()
    residuals = ImageResiduals(fitting_sequence)
    param = residuals.param
    x0 = param.kwargs2args(**fitting_sequence._updateManager.parameter_state)
    lower, upper = (np.asarray(bound, float) for bound in param.param_limits())
    result = levenberg_marquardt(
        residuals, lambda x: residuals.jacobian(x, lower, upper), x0, lower, upper,
        max_iterations=max_iterations, tolerance=tolerance,
    )
    kwargs_result = param.args2kwargs(result["x"], bijective=True)
    info = {key: result[key] for key in ("chi2", "chi2_history", "iterations", "evaluations", "converged")}
    info.update(seconds=time.perf_counter() - start, param_names=residuals.param_names)
    return kwargs_result, info
