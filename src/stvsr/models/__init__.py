"""Network architectures, one module per model; each registers its presets on import.

Modules here are imported lazily by :func:`stvsr.registry.list_models` /
:func:`stvsr.create_model`, so adding a file is enough to add its presets.
"""
