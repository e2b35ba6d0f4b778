"""Network architectures, one module per model.

The modules that register presets are listed in :data:`PRESET_MODULES`; the registry imports
exactly these on first lookup (:func:`stvsr.registry.list_models` /
:func:`stvsr.create_model`), and an import error propagates. A new model module registers its
presets at the bottom (``register_model(...)``, with its weights declared as module-level
:class:`~stvsr.weights.WeightsSpec` constants) and is added here; a test checks that every
module calling ``register_model`` is listed.
"""

PRESET_MODULES: tuple[str, ...] = (
    "basicvsr",
    "bicubic",
    "edvr",
    "lr_clean",
    "rife",
    "rife4",
    "sfnet",
    "sfnet_s",
    "sfnet_s2",
    "stvsr_baselines",
)
