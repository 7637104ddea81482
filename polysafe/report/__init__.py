"""Metrics over stored results, and tables, charts and pages to show them."""

from .base import RENDERERS, ReportInput, load_report_input, render

__all__ = ["RENDERERS", "ReportInput", "load_report_input", "render"]
