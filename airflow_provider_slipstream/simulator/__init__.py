"""A faithful local Slipstream API (AudioVerify, tracks, licenses), for demos, tests and your own CI.

It is a real HTTP server on 127.0.0.1 that implements the documented API: bearer auth,
``POST /api/v4/video-recognition/`` (multipart ``file`` or JSON ``storage_key``),
``POST /api/v4/video-recognition/upload-url/`` and ``GET /api/v4/video-recognition/{job_id}/``,
with the documented error bodies; and beyond AudioVerify ``GET /api/v4/{language}/tracks/{id}/``
(the catalog) and ``POST /api/v1/licenses/generate`` (no trailing slash). Presigned upload URLs
point to a second socket that plays S3, so the upload host differs from the API host as in production.

Running it
----------
From a shell::

    python -m airflow_provider_slipstream.simulator --port 8765
    # options: --s3-port N --api-key K --queued-seconds F --processing-seconds F
    #          --job-ttl-seconds F --port-file PATH (with --port 0) --access-log

In Python::

    from airflow_provider_slipstream.simulator import SimulatorServer

    with SimulatorServer() as sim:          # free ports; starts in a few milliseconds
        sim.url                             # API base, e.g. http://127.0.0.1:41234
        sim.s3_url                          # the upload host
        sim.state                           # SimulatorState: config, faults, counters

In pytest, use the ``slipstream_simulator`` fixture (a fresh server per test with fast
timings: 0.2 s queued, 0.5 s processing). Installing the provider registers its plugin,
``airflow_provider_slipstream.simulator.pytest_plugin``; without the installed package, name
that module in ``pytest_plugins`` of your top-level conftest.py.

Point an Airflow connection at it: ``host`` = ``sim.url``, ``password`` = the API key.

Configuration (``SimulatorState`` attributes; change with ``state.configure(...)``)
----------------------------------------------------------------------------------
- ``api_key`` (``"sim-partner-key"``): the only accepted partner key. No or garbled
  ``Authorization: Bearer`` header -> 401, another key -> 403.
- ``queued_seconds`` (0.5) and ``processing_seconds`` (1.5): a job is ``queued``, then
  ``processing``, then ``completed``. Taken per job when it is created.
- ``job_ttl_seconds`` (86400): after completion + TTL the job answers 404.
- ``upload_url_expires_in`` (600): lifetime of presigned URLs; 0 issues expired URLs.
- ``max_file_bytes`` (100 MiB): size limit of a direct upload.
- ``license_daily_limit`` (1000) and ``license_monthly_limit`` (30000): the partner's license
  caps; ``license_daily_used`` / ``license_monthly_used`` set the counters (start near a cap).

Tracks and licenses
-------------------
``CATALOG`` (``simulator.catalog``) maps track id -> the full body of
``GET /api/v4/en/tracks/{id}/``: "Golden Hour" by The Coast (``11111111-1111-1111-1111-111111111111``,
the ``internal`` scenario's match) and "Tonight We Dance" (``e9463c97-8ca9-4eae-8b7f-e92e8d4ee08b``).
Another language, an unknown or non-UUID id -> 404 ``{"detail": "Not found."}``.

``POST /api/v1/licenses/generate`` (bearer key, then ``X-User-ID`` -> 400 if missing; JSON
``track_id`` UUID, optional ``project_name`` up to 255 characters; unknown track -> 404) answers
200 with the documented body. Undocumented, chosen here: every call is a new license and spends
one of the partner's daily and monthly quota (UTC day and month); at a cap -> 429 with
``Retry-After`` (seconds to the reset) and ``{"success": false, "error": {"code":
"quota_exceeded", "message", "resets_at"}, "usage": {...}}``, spending nothing.

Scenarios (deterministic by the video)
--------------------------------------
The file name (the uploaded file's name, or the file name inside the ``storage_key``) is
searched, case-insensitively, for these keywords in this order:

- ``stall``: the job stays ``processing`` for ever (test your timeouts).
- ``odd_status``: while processing it reports the undocumented status ``"transcoding"``,
  then completes as ``internal``.
- ``internal``: a Slipstream catalog match ("Golden Hour" by The Coast).
- ``competitor``: an outside match labelled "Epidemic Sound".
- ``external``: an outside match labelled "Independent Records".
- ``no_music``: completed with ``track: null``.

Without a keyword, ``sha256(content) mod 4`` picks internal / competitor / external /
no_music, so the same bytes always give the same answer. ``SCENARIOS`` maps each of the
four outcome names to the exact track dict (or None). Job bodies also carry an extra
``created_at`` field (ISO 8601 UTC), as clients must ignore unknown fields.

Presigned uploads
-----------------
``upload_url`` is ``{s3_url}/sim-bucket/temp/{storage_key}?X-Amz-...&X-Amz-Signature=...``,
signed over key, time, expiry and Content-Type. The PUT answers like S3, with XML errors:
an ``Authorization`` header -> 400 ``InvalidArgument``; expired -> 403 ``AccessDenied``
"Request has expired"; another Content-Type or a tampered URL -> 403
``SignatureDoesNotMatch``; no Content-Length (chunked body) -> 411; a second PUT to the
same URL -> 403. Success: 200 with an ``ETag``. Only then can the ``storage_key`` be submitted.

Fault injection
---------------
``state.add_fault(Fault(kind, path="/", method=None, remaining=None, ...))``. Each request
(API or S3) takes the first rule whose method (None = any) and path match and whose
``remaining`` is not 0 (None = unlimited), and decrements it. ``path`` is a prefix, or an
fnmatch glob if it contains ``*?[`` (e.g. ``/api/v4/video-recognition/*/``). Kinds:

- ``status``: answer ``status`` (default 503) with ``body`` (dict -> JSON, str -> as is;
  default a DRF-style ``{"detail": ...}``), ``content_type`` and ``headers``, e.g.
  ``Fault("status", status=429, headers={"Retry-After": "2"}, remaining=1)``.
- ``delay``: wait ``seconds``, then handle the request normally.
- ``hold``: handle the request normally (a submit creates its job), then wait ``seconds`` before
  answering: the window in which a client that dies has lost the answer to a request that worked.
- ``drop``: start a 200 declaring Content-Length 1000, send a few bytes, close the
  connection (the client sees an incomplete read).
- ``malformed``: 200 ``application/json`` whose body is not JSON.
- ``html``: an HTML error page with ``status`` (default 502), as a proxy would send.

On the license path a ``drop`` never reaches the handler (no license, no quota spent); a
``hold`` creates the license first, so a client timing out meanwhile has lost a license that
exists ("reached the server, answer lost").

Faulted requests are logged with their fault kind. ``state.clear_faults()`` removes all.

Observing and controlling
-------------------------
Python (thread-safe): ``state.jobs_created``, ``state.licenses`` (``license_id``,
``track_id``, ``user_id``, ``project_name``, ...), ``state.license_usage()``,
``state.requests`` (records with ``server``, ``method``, ``path``, ``headers`` with
lower-case names, ``status``, ``fault``),
``state.count(method=None, path_glob=None)``, ``state.uploads``, ``state.jobs``,
``state.expire_job(job_id)``, ``state.set_api_key(key)``, ``state.configure(...)``,
``state.reset()`` (jobs, uploads, licenses, log, faults, counters; not the configuration).
An ``Authorization`` header is logged as its scheme plus ``[redacted]``: the log shows that
it was sent, never the key. The simulator never logs or prints the API key.

HTTP, on the API port, for scripts and other processes (no auth; not logged, not counted,
never faulted):

- ``GET /_sim/stats`` -> ``{"jobs_created": n, "licenses": n, "requests": n, "by_route": {"GET
  /api/v4/video-recognition/{job_id}/": n, "GET /api/v4/{language}/tracks/{track_id}/": n, ...}}``
- ``POST /_sim/reset``
- ``GET /_sim/faults``, ``POST /_sim/faults`` (JSON with ``Fault`` fields), ``DELETE /_sim/faults``
- ``PUT /_sim/config`` (JSON subset of the configuration, ``api_key`` included)
- ``POST /_sim/jobs/{job_id}/expire``
"""

from airflow_provider_slipstream.simulator.catalog import CATALOG
from airflow_provider_slipstream.simulator.scenarios import SCENARIOS
from airflow_provider_slipstream.simulator.server import SimulatorServer
from airflow_provider_slipstream.simulator.state import Fault, SimulatorState

__all__ = ["CATALOG", "SCENARIOS", "Fault", "SimulatorServer", "SimulatorState"]
