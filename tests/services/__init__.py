"""Real servers (SeaweedFS S3, ...) started for tests."""
