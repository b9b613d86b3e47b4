"""Jobs over the in-memory API: the batch scoring job and its engines (MLflow lives here)."""
