"""
The main job (``make demo``): start the local Slipstream simulator, run the example DAGs with
``airflow dags test`` against it, and print what each sample clip led to.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow_harness import AirflowHarness, slipstream_conn

from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import SimulatorServer

BRANCHES = ("catalog_match", "flag_competitor", "review_outside_track", "no_music")
DEMO_HOME = Path(__file__).resolve().parent.parent / ".demo" / "airflow"


def _track(result: dict | None) -> str:
    if not result or not result.get("track"):
        return "no music"
    track = result["track"]
    label = f", label {track['external_label']}" if track["external_label"] else ""
    return f"{track['title']!r} by {track['artist']}{label}"


def main() -> int:
    failures = 0
    with SimulatorServer() as sim:
        print(f"Slipstream simulator on {sim.url}; Airflow home {DEMO_HOME}", flush=True)
        conn = slipstream_conn(sim.url, sim.state.api_key)
        harness = AirflowHarness(DEMO_HOME, conn)
        harness.migrate()

        print("\n== slipstream_audioverify: one run per sample clip ==", flush=True)
        print(f"{'clip':30} {'branch taken':22} {'match':11} track; license")
        for path in sample_videos().values():
            run = harness.dags_test("slipstream_audioverify", {"video_path": str(path)})
            states = harness.task_states(run)
            taken = [b for b in BRANCHES if states.get((b, -1)) == "success"]
            result = harness.xcom(run, "get_track")
            granted = harness.xcom(run, "license_track")
            match = result["match"] if result else "-"
            # A license for the catalog clip only.
            ok = run.returncode == 0 and len(taken) == 1 and bool(granted) == (match == "internal")
            failures += not ok
            license_url = granted["license_url"] if granted else "no license"
            row = f"{path.name:30} {','.join(taken) or 'NONE':22} {match:11} {_track(result)}; {license_url}"
            print(row, flush=True)
            if not ok:
                print(run.output[-4000:], file=sys.stderr)

        print("\n== slipstream_audioverify_batch: all clips at once, deferrable ==", flush=True)
        run = harness.dags_test("slipstream_audioverify_batch")
        summary = harness.xcom(run, "summarize")
        if run.returncode != 0 or not summary:
            failures += 1
            print(run.output[-4000:], file=sys.stderr)
        else:
            print(f"counts per match kind: {summary['counts']}")
            for hit in summary["competitor_hits"]:
                print(f"competitor hit: {hit['title']!r} ({hit['label']}) in job {hit['job_id']}")
        print(
            "\n== slipstream_audioverify_catalog: a folder of 40 clips in 2 sharded batches, deferrable ==", flush=True
        )
        run = harness.dags_test("slipstream_audioverify_catalog", {"workdir": str(DEMO_HOME.parent / "catalog")})
        summaries = [harness.xcom(run, "recognize_shard", map_index=index) for index in range(2)]
        if run.returncode != 0 or not all(summaries):
            failures += 1
            print(run.output[-4000:], file=sys.stderr)
        else:
            for index, summary in enumerate(summaries):
                print(f"shard {index}: {summary['videos']} videos, {summary['counts']}, failed {summary['failed']}")
                print(f"         results: {summary['output_path']}")
        print(f"\nSimulator: {sim.state.jobs_created} jobs created, {len(sim.state.requests)} API requests")
    print("Demo finished." if not failures else f"Demo finished with {failures} failure(s).")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
