"""MLflow compatibility (docs/mlflow.md): what the MLflow REST API on `modelvc server`
and `modelvc import mlflow` share.

A registered model is a modelvc model, a model version a version, an alias a channel:
those live in the registry and go through the Registry API. What MLflow has and modelvc
does not (experiments, runs, logged models, descriptions and key/value tags) is kept in
`sidecar.Sidecar`, beside the registry's metadata.
"""
