"""Model export (ONNX): :func:`stvsr.export.onnx_export.export_onnx`, ``stvsr export``."""
