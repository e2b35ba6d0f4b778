"""One self-contained HTML page from eval results and upscaled videos (``stvsr report``)."""

from stvsr.report.build import build_report, load_result

__all__ = ["build_report", "load_result"]
