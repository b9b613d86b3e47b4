"""The batch scoring job: :func:`.job.score` with its local engine, the Spark engine
(:mod:`.spark`, :mod:`.spark_io`), and the work on one chunk both engines share (:mod:`.chunk`)."""
