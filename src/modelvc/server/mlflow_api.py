"""The MLflow API's router, whole: handlers registered by their modules, then the
catch-all ENDPOINT_NOT_FOUND routes (after them, so they match last). app.py mounts it."""

from __future__ import annotations

from . import (
    mlflow_artifacts,
    mlflow_logged_models,
    mlflow_registry,
    mlflow_tracking,
    mlflow_versions,
)
from .mlflow import mount, router

__all__ = ["mlflow_artifacts", "mlflow_logged_models", "mlflow_registry", "mlflow_tracking",
           "mlflow_versions", "router"]
mount()
