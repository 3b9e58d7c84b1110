"""Console pages: problems."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console_problems", __name__, url_prefix="/admin")
