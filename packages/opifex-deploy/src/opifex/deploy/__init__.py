"""Export, serving, canary roll-out and rollback of trained opifex solvers.

Export and registry (``_artifact``, ``_registry``): ``export_function(fn, signature)`` lowers a
per-example JAX function with ``jax.export`` (batched, with a symbolic batch size) to a
serialized, hashed artifact; ``load_artifact`` verifies and loads one; ``Registry(root)`` keeps
versions ``v1, v2, ...`` of named artifacts in a local directory or an fsspec store, with
``stable`` / ``canary`` channels, rollback and an event log. ``Signature`` / ``TensorSpec``
describe what a served function takes and returns, per example.

Serving (``_service``, ``_batching``, ``_cache``, ``_metrics``): ``create_app(solvers)`` is a
Starlette app answering ``POST /v1/solvers/{name}/predict`` (JSON or ``.npz``) with requests
validated against the signature, micro-batched into padded bucket sizes, cached by input hash,
with ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and ``/openapi.json``.

Roll-out (``_canary``, ``_provider``, ``_replicas``): ``AdaptiveDeploymentSystem`` routes a
share of the traffic to the registry's ``canary`` version and rolls it back automatically when
its error rate, latency or solution quality is worse than the stable version's;
``create_registry_app`` serves what a registry's channels point to and follows their changes;
``ReplicaSet`` runs the service in several supervised processes on one machine.

Performance (``_platform``): ``HybridPerformancePlatform`` measures a servable (compile time
apart from steady-state latency) and picks the batch size and device by measurement.

Dashboard (``_dashboard``, ``_results``, ``_runlog``): ``Dashboard`` is a page served at
``/dashboard/`` with the benchmark results, the registered solvers and their canary state, and
live optimisation runs fed by ``report_point``.

``opifex.deploy`` serves any exported function and imports no algorithm package.
"""

from opifex.deploy._artifact import (
    ArtifactCompatibilityError,
    ArtifactIntegrityError,
    ExportedFunction,
    export_function,
    load_artifact,
)
from opifex.deploy._batching import MicroBatcher, bucket_sizes, run_padded
from opifex.deploy._cache import ResultCache, cache_key, request_digest
from opifex.deploy._canary import (
    AdaptiveDeploymentSystem,
    Decision,
    QualityCheck,
    VersionStats,
    import_quality_check,
    output_quality,
)
from opifex.deploy._dashboard import Dashboard
from opifex.deploy._metrics import ServiceMetrics
from opifex.deploy._platform import (
    HybridPerformancePlatform,
    Measurement,
    PerformancePlan,
    choose_plan,
    default_devices,
)
from opifex.deploy._provider import (
    SERVE_CONFIG_ENV,
    RegistryTable,
    app_from_environment,
    create_registry_app,
    serve_config,
    warm_servable,
)
from opifex.deploy._registry import NotInRegistryError, Registry
from opifex.deploy._replicas import ReplicaSet, free_port, ready
from opifex.deploy._results import ResultsReader
from opifex.deploy._runlog import RunLog, report_point
from opifex.deploy._service import (
    RequestOutcome,
    Servable,
    SolverService,
    SolverTable,
    create_app,
    openapi_document,
)
from opifex.deploy._signature import Signature, TensorSpec, coerce_inputs

__all__ = [
    "SERVE_CONFIG_ENV",
    "AdaptiveDeploymentSystem",
    "ArtifactCompatibilityError",
    "ArtifactIntegrityError",
    "Dashboard",
    "Decision",
    "ExportedFunction",
    "HybridPerformancePlatform",
    "Measurement",
    "MicroBatcher",
    "NotInRegistryError",
    "PerformancePlan",
    "QualityCheck",
    "Registry",
    "RegistryTable",
    "ReplicaSet",
    "RequestOutcome",
    "ResultCache",
    "ResultsReader",
    "RunLog",
    "Servable",
    "ServiceMetrics",
    "Signature",
    "SolverService",
    "SolverTable",
    "TensorSpec",
    "VersionStats",
    "app_from_environment",
    "bucket_sizes",
    "cache_key",
    "choose_plan",
    "coerce_inputs",
    "create_app",
    "create_registry_app",
    "default_devices",
    "export_function",
    "free_port",
    "import_quality_check",
    "load_artifact",
    "openapi_document",
    "output_quality",
    "ready",
    "report_point",
    "request_digest",
    "run_padded",
    "serve_config",
    "warm_servable",
]
