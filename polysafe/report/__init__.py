"""Metrics over stored results, and tables, charts and pages to show them."""

from ..registry import load_plugins
from .base import RENDERERS, ReportInput, load_report_input, render

__all__ = ["RENDERERS", "ReportInput", "load_report_input", "render"]

load_plugins(__name__)
