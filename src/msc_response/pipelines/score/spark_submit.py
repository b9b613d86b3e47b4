"""The command line as a script ``spark-submit`` can run (it runs files, not modules).

``spark-submit [--master yarn ...] $(python -m msc_response.pipelines.score.spark_submit) score
--engine spark ...``: run as a module it prints its own path; run as a script (by
``spark-submit``) it is ``msc-response``.
"""

import sys

if __name__ == "__main__":
    if sys.argv[0] == "-m" or __spec__ is not None:  # python -m ...: where this file is
        print(__file__)
    else:
        from msc_response.cli import app

        app(prog_name="msc-response")
