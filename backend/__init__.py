"""xputrace backend: REST API, ingest of agent event batches, storage, trace jobs."""
