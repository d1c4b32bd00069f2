"""Developer kit: what the tests and the benchmarks (``bench/``) both need to run the real
thing locally: start, await and stop server processes (:mod:`devkit.processes`) and
register a model trained on Elec2 (:mod:`devkit.models`).

Never imported by the apps (``ia_continu``, ``api``, ``ui``, ``flows``, ``deployments``)
and not copied into the images.
"""
