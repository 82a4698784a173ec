"""Registration of the light profile 'VAE' with lenstronomy 1.14.

lenstronomy has no plug-in mechanism for light profiles: ``LightModelBase.__init__`` builds
profiles in an if/elif chain, and a few methods of ``LinearBasis``/``LightModelBase`` branch on
profile names. We wrap exactly those methods (the table ``_ALIASED`` below and ``__init__``):

* ``__init__``: 'VAE' entries are built by lenstronomy as a cheap stand-in ('UNIFORM') from
  copies of the user's lists, then replaced by :class:`~lenstronomy_vae.lensing.profile.VAEProfile`
  objects; ``profile_type_list`` is the user's own list object again afterwards.
* name-branching methods: for an instance holding 'VAE' entries, ``profile_type_list`` reads
  'SERSIC' at those positions for the duration of the call, because a VAE galaxy is handled
  exactly like a single-amplitude, positive-flux profile (one linear parameter 'amp',
  ``function(x, y, amp=1, ...)``, ``total_flux``).

* ``class_creator.create_class_instances``: with per-band index lists
  (``index_source_light_model_list``, ``index_lens_light_model_list``) lenstronomy 1.14 hands each
  band's LightModel the whole profile kwargs list; for lists holding 'VAE' each band gets the
  kwargs of its own models (e.g. one ``band`` of a multi-band VAE per imaging band).
* ``FittingSequence.fit_sequence``: the step ``['LM', {...}]`` (Levenberg–Marquardt with
  decoder derivatives, :mod:`lenstronomy_vae.lensing.lm`) runs between lenstronomy's own steps, which
  are passed through unchanged.

Instances without 'VAE' go straight to the original methods, so built-in profiles behave
exactly as before. Everything is checked at import against the supported lenstronomy version, the
signatures of the wrapped methods, the lenstronomy attributes that 'LM' reads (``_LM_READS``) and
the keys of ``kwargs_likelihood`` (each one modelled, inert or refused by 'LM'), so a lenstronomy
change fails loudly instead of mis-modelling.
"""

import contextlib
import dis
import functools
import inspect
import threading

import lenstronomy
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.ImSim.MultiBand.single_band_multi_model import SingleBandMultiModel
from lenstronomy.LightModel import light_model_base
from lenstronomy.LightModel.light_model_base import LightModelBase
from lenstronomy.LightModel.linear_basis import LinearBasis
from lenstronomy.Sampling.likelihood import Likelihood
from lenstronomy.Sampling.Likelihoods.image_likelihood import ImageLikelihood
from lenstronomy.Sampling.parameters import Param
from lenstronomy.Util import class_creator
from lenstronomy.Workflow.fitting_sequence import FittingSequence
from lenstronomy.Workflow.update_manager import UpdateManager

from lenstronomy_vae.lensing.lm import (
    INERT_LIKELIHOOD_KEYS,
    MODELLED_LIKELIHOOD_KEYS,
    UNMODELLED_LIKELIHOOD_TERMS,
    check_supported,
    run_lm,
)
from lenstronomy_vae.lensing.parameters import check_data
from lenstronomy_vae.lensing.profile import VAEProfile
from lenstronomy_vae.lensing.threads import limited_threads

VAE_NAME = "VAE"
# lenstronomy builds this for 'VAE' positions before we replace it: no arguments, no cost.
_STAND_IN = "UNIFORM"
# How lenstronomy's name checks should see 'VAE': one linear amplitude, positive flux,
# total_flux supported.
_ALIAS = "SERSIC"

SUPPORTED_VERSIONS = ((1, 14), (1, 15))  # [lower, upper)

# (class, method) → parameter names the wrapper relies on.
_ALIASED = {
    (LinearBasis, "functions_split"): ["self", "x", "y", "kwargs_list", "k"],
    (LinearBasis, "num_param_linear_list"): ["self", "kwargs_list"],
    (LinearBasis, "update_linear"): ["self", "param", "i", "kwargs_list"],
    (LinearBasis, "check_positive_flux_profile"): ["self", "kwargs_list"],
    (LightModelBase, "total_flux"): ["self", "kwargs_list", "norm", "k"],
}
_INIT_PARAMETERS = ["self", "light_model_list", "profile_kwargs_list"]
# (model list, profile kwargs list, per-band index list) arguments of class_creator.create_class_instances:
# lenstronomy 1.14 selects each band's light models by index but passes the whole profile kwargs list on.
_PER_BAND_LISTS = (("source_light_model_list", "source_light_profile_kwargs_list", "index_source_light_model_list"),
                   ("lens_light_model_list", "lens_light_profile_kwargs_list", "index_lens_light_model_list"))
_CREATE_PARAMETERS = {"band_index", "all_models", *(name for names in _PER_BAND_LISTS for name in names)}
_FIT_SEQUENCE_PARAMETERS = ["self", "fitting_list"]
LM_STEP = "LM"

# class → attributes that lm.py and the wrappers here read: methods and properties, found on
# the class, or instance attributes, found among the names that the code of the class and of its
# parents assigns (``self.name = ...``), so that no lenstronomy object is built to check them.
# SingleBandMultiModel (an ImageLinearFit, an ImageModel) is the image model of 'single-band' fits.
_LM_READS = {
    FittingSequence: ["_updateManager", "likelihood_class", "param_class", "multi_band_list"],
    UpdateManager: ["kwargs_model", "kwargs_likelihood", "parameter_state", "check_initial_state",
                    "update_param_state"],
    Likelihood: ["image_likelihood"],
    ImageLikelihood: ["imSim"],
    SingleBandMultiModel: ["type", "Data", "SourceModel", "LensLightModel", "likelihood_mask", "image_linear_solve",
                           "linear_response_matrix", "source_surface_brightness", "lens_surface_brightness",
                           "check_positive_flux"],
    Param: ["args2kwargs", "kwargs2args", "param_limits", "num_param", "linear_solver"],
    ImageData: ["data", "C_D_model", "likelihood_method"],
    LightModelBase: ["func_list", "profile_type_list"],
}
# Parameters of Likelihood.__init__ that are not kwargs_likelihood keys.
_LIKELIHOOD_ARGUMENTS = {"self", "kwargs_data_joint", "kwargs_model", "param_class"}

_MARKER = "__lenstronomy_vae_original__"

# Serialises the temporary renaming: two threads sharing one LightModel must not interleave it.
_SWAP_LOCK = threading.RLock()
_REGISTER_LOCK = threading.Lock()


class LenstronomyCompatibilityError(ImportError):
    """The installed lenstronomy differs from the one the 'VAE' registration was written for."""


def _check_compatibility():
    """Raise LenstronomyCompatibilityError naming what changed in lenstronomy."""
    version = lenstronomy.__version__
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = None
    low, high = SUPPORTED_VERSIONS
    if major_minor is None or not low <= major_minor < high:
        raise LenstronomyCompatibilityError(
            f"lenstronomy_vae registers the 'VAE' light profile by wrapping lenstronomy "
            f"internals and supports lenstronomy >={low[0]}.{low[1]},<{high[0]}.{high[1]}; "
            f"lenstronomy {version} is installed"
        )
    missing = _CREATE_PARAMETERS - set(inspect.signature(
        getattr(class_creator.create_class_instances, _MARKER, class_creator.create_class_instances)).parameters)
    if missing:
        raise LenstronomyCompatibilityError(
            f"lenstronomy {version}: class_creator.create_class_instances has no parameters {sorted(missing)}; "
            "the 'VAE' registration (lenstronomy_vae/lensing/registration.py) must be updated"
        )
    expected = {(LightModelBase, "__init__"): _INIT_PARAMETERS,
                (FittingSequence, "fit_sequence"): _FIT_SEQUENCE_PARAMETERS, **_ALIASED}
    for (cls, name), parameters in expected.items():
        method = cls.__dict__.get(name)
        if method is None:
            raise LenstronomyCompatibilityError(
                f"lenstronomy {version}: {cls.__name__}.{name} no longer exists; the 'VAE' "
                "registration (lenstronomy_vae/lensing/registration.py) must be updated"
            )
        found = list(inspect.signature(getattr(method, _MARKER, method)).parameters)
        if found != parameters:
            raise LenstronomyCompatibilityError(
                f"lenstronomy {version}: {cls.__name__}.{name} has parameters {found}, expected "
                f"{parameters}; the 'VAE' registration (lenstronomy_vae/lensing/registration.py) "
                "must be updated"
            )
    for cls, names in _LM_READS.items():
        stored = None
        for name in names:
            if hasattr(cls, name):
                continue
            stored = _assigned_attributes(cls) if stored is None else stored
            if name not in stored:
                raise LenstronomyCompatibilityError(
                    f"lenstronomy {version}: {cls.__name__}.{name} no longer exists; the 'LM' step "
                    "(lenstronomy_vae/lensing/lm.py) reads it and must be updated"
                )
    keys = set(inspect.signature(Likelihood.__init__).parameters) - _LIKELIHOOD_ARGUMENTS
    known = MODELLED_LIKELIHOOD_KEYS | INERT_LIKELIHOOD_KEYS | set(UNMODELLED_LIKELIHOOD_TERMS)
    if keys != known:
        raise LenstronomyCompatibilityError(
            f"lenstronomy {version}: the kwargs_likelihood keys of Likelihood differ from those the 'LM' step "
            f"knows (new: {sorted(keys - known)}, gone: {sorted(known - keys)}); lenstronomy_vae/lensing/lm.py "
            "must model or refuse each term"
        )


def _assigned_attributes(cls):
    """Attribute names that the methods (and property getters) of cls and its parents assign."""
    names = set()
    for klass in cls.__mro__:
        for member in vars(klass).values():
            function = getattr(member, "fget", member)
            code = getattr(getattr(function, _MARKER, function), "__code__", None)
            if code is not None:
                names.update(op.argval for op in dis.get_instructions(code) if op.opname == "STORE_ATTR")
    return names


def _lm_settings_are_current(fitting_list):
    """Whether the first 'LM' step of fitting_list runs with the current kwargs_model and kwargs_likelihood."""
    for step in fitting_list:
        if step[0] == LM_STEP:
            return True
        if step[0] == "update_settings" and {"kwargs_model", "kwargs_likelihood"} & set(step[1]):
            return False
    return False


def _wrap_init(original):
    @functools.wraps(original)
    def __init__(self, light_model_list, profile_kwargs_list=None):
        if VAE_NAME not in list(light_model_list):
            return original(self, light_model_list, profile_kwargs_list)
        types = list(light_model_list)
        if profile_kwargs_list is None:
            kwargs_list = [None] * len(types)
        else:
            kwargs_list = list(profile_kwargs_list)
            if len(kwargs_list) != len(types):
                # lenstronomy would zip() the lists and silently pair profiles with the wrong
                # kwargs (e.g. index_source_light_model_list with a full profile_kwargs_list).
                raise ValueError(
                    f"profile_kwargs_list has {len(kwargs_list)} entries but light_model_list "
                    f"{types} has {len(types)}; give one dict (or None) per light model"
                )
        is_vae = [name == VAE_NAME for name in types]
        original(
            self,
            [_STAND_IN if vae else name for name, vae in zip(types, is_vae)],
            [None if vae else kwargs for kwargs, vae in zip(kwargs_list, is_vae)],
        )
        for i, vae in enumerate(is_vae):
            if vae:
                self.func_list[i] = VAEProfile(**(kwargs_list[i] or {}))
        self.profile_type_list = light_model_list
        self._vae_alias_types = [_ALIAS if vae else name for name, vae in zip(types, is_vae)]

    setattr(__init__, _MARKER, original)
    return __init__


def _wrap_create_class_instances(original):
    """Give each band's LightModel the profile kwargs of its own light models (index lists, 'VAE' only)."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def create_class_instances(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        for models, profiles, index in _PER_BAND_LISTS:
            if values["all_models"] or values[index] is None or values[profiles] is None:
                continue
            if VAE_NAME not in (values[models] or []):
                continue
            if len(values[profiles]) != len(values[models]):
                raise ValueError(f"{profiles} has {len(values[profiles])} entries but {models} has "
                                 f"{len(values[models])}; give one dict (or None) per light model of the full list "
                                 f"(the bands select theirs through {index})")
            values[profiles] = [values[profiles][k] for k in values[index][values["band_index"]]]
        return original(*bound.args, **bound.kwargs)

    setattr(create_class_instances, _MARKER, original)
    return create_class_instances


def _wrap_aliased(original):
    @functools.wraps(original)
    def method(self, *args, **kwargs):
        alias_types = self.__dict__.get("_vae_alias_types")
        if alias_types is None:
            return original(self, *args, **kwargs)
        with _SWAP_LOCK:
            user_types = self.profile_type_list
            self.profile_type_list = alias_types
            try:
                return original(self, *args, **kwargs)
            finally:
                self.profile_type_list = user_types

    setattr(method, _MARKER, original)
    return method


def _has_vae_component(fitting_sequence):
    """Whether the fit's source or lens light model list holds a 'VAE'."""
    kwargs_model = fitting_sequence._updateManager.kwargs_model
    light_lists = (kwargs_model.get(key) or [] for key in ("source_light_model_list", "lens_light_model_list"))
    return any(VAE_NAME in names for names in light_lists)


def _check_vae_fit_data(fitting_sequence):
    """Refuse NaN pixels or non-positive noise in a fit with a 'VAE' component.

    lenstronomy would silently turn them into a NaN likelihood that optimisers wander on.
    """
    for band, (kwargs_data, _, _) in enumerate(fitting_sequence.multi_band_list):
        try:
            check_data(kwargs_data)
        except ValueError as error:
            raise ValueError(f"band {band} of multi_band_list: {error}") from None


def _wrap_fit_sequence(original):
    @functools.wraps(original)
    def fit_sequence(self, fitting_list):
        """lenstronomy's fit_sequence, plus the step ['LM', {kwargs of lenstronomy_vae.lensing.lm.run_lm}].

        An 'LM' step starts from the current parameter state, updates it as PSO does, and adds
        ``['LM', kwargs_result, info]`` to the returned chain list (``info``: chi2, chi2_history,
        iterations, evaluations, converged, seconds, param_names).

        A setup that 'LM' refuses (see lenstronomy_vae.lensing.lm.check_supported) raises before
        any step runs, unless an earlier update_settings step changes kwargs_model or
        kwargs_likelihood; then when the 'LM' step starts. A fit with a 'VAE' component runs with
        its BLAS/OpenMP thread pools limited (lenstronomy_vae.lensing.threads); built-in fits run
        exactly as lenstronomy runs them.
        """
        has_vae = _has_vae_component(self)
        if has_vae:
            _check_vae_fit_data(self)
        if _lm_settings_are_current(fitting_list):
            check_supported(self)
        chain_list, pending = [], []
        with limited_threads() if has_vae else contextlib.nullcontext():
            for step in fitting_list:
                if step[0] != LM_STEP:
                    pending.append(step)
                    continue
                if pending:
                    chain_list += original(self, pending)
                    pending = []
                self._updateManager.check_initial_state()
                kwargs_result, info = run_lm(self, **step[1])
                self._updateManager.update_param_state(**kwargs_result)
                chain_list.append([LM_STEP, kwargs_result, info])
            if pending:
                chain_list += original(self, pending)
        return chain_list

    setattr(fit_sequence, _MARKER, original)
    return fit_sequence


def register():
    """Make 'VAE' a lenstronomy light profile (idempotent).

    Raises:
        LenstronomyCompatibilityError: unsupported lenstronomy version or changed internals.
    """
    with _REGISTER_LOCK:
        _check_compatibility()
        targets = {(LightModelBase, "__init__"): _wrap_init, (FittingSequence, "fit_sequence"): _wrap_fit_sequence}
        targets.update({key: _wrap_aliased for key in _ALIASED})
        for (cls, name), wrap in targets.items():
            current = cls.__dict__[name]
            if not hasattr(current, _MARKER):
                setattr(cls, name, wrap(current))
        if not hasattr(class_creator.create_class_instances, _MARKER):
            class_creator.create_class_instances = _wrap_create_class_instances(class_creator.create_class_instances)
        # Only for lenstronomy's "unknown light model" message, which lists the supported names.
        if VAE_NAME not in light_model_base._MODELS_SUPPORTED:
            light_model_base._MODELS_SUPPORTED.append(VAE_NAME)


def is_registered():
    """Whether every lenstronomy method of the registration is wrapped."""
    keys = [(LightModelBase, "__init__"), (FittingSequence, "fit_sequence"), *_ALIASED]
    return (all(hasattr(cls.__dict__[name], _MARKER) for cls, name in keys)
            and hasattr(class_creator.create_class_instances, _MARKER))
