"""The compiler: checkpoint -> model package (see compile.py for the pipeline)."""
