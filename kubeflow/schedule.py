"""Creates a KFP recurring run (scheduled retraining) from a compiled pipeline spec, through the kfp SDK.

One run at a time (``max_concurrency=1``) and no catch-up: after downtime the scheduler starts only the latest
missed run, because each run already reads the latest data span.
"""

from __future__ import annotations

import json
from typing import Dict, Optional

import yaml


def check_cron(cron: str) -> str:
    """KFP takes 6-field cron expressions (seconds first): ``0 0 3 * * *`` is 03:00 every day."""
    if len(cron.split()) != 6:
        raise ValueError(f"--cron {cron!r}: KFP cron expressions have 6 fields, seconds first "
                         "(e.g. '0 0 3 * * *' for 03:00 every day)")
    return cron


def load_spec(package_path: str) -> dict:
    """The PipelineSpec of a compiled ``.yaml`` (the form the SDK uploads)."""
    if not package_path.endswith((".yaml", ".yml")):
        raise ValueError(f"{package_path}: schedule a compiled .yaml (ondevice-rec kubeflow compile --output x.yaml)")
    with open(package_path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or "root" not in spec or "deploymentSpec" not in spec:
        raise ValueError(f"{package_path} is not a compiled KFP pipeline spec")
    return spec


def pipeline_parameters(spec: dict) -> Dict[str, dict]:
    return spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})


def check_params(spec: dict, params: Dict[str, str]) -> Dict[str, str]:
    known = pipeline_parameters(spec)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown pipeline parameter(s) {', '.join(unknown)}; the pipeline takes: "
                         f"{', '.join(sorted(known)) or 'none'}")
    return params


def request_summary(spec: dict, cron: str, experiment: str, job_name: str, params: Dict[str, str],
                    pipeline_root: Optional[str]) -> dict:
    """What ``schedule`` asks the server for (printed by ``--dry-run``)."""
    return {
        "experiment": experiment,
        "display_name": job_name,
        "trigger": {"cron_schedule": {"cron": cron}},
        "max_concurrency": 1,
        "no_catchup": True,
        "mode": "ENABLE",
        "pipeline": spec.get("pipelineInfo", {}).get("name"),
        "pipeline_tasks": sorted(spec["root"].get("dag", {}).get("tasks", {})),
        "runtime_config": {"parameters": params, "pipeline_root": pipeline_root},
    }


def schedule(host: str, package_path: str, cron: str, experiment: str, job_name: Optional[str] = None,
             params: Optional[Dict[str, str]] = None, pipeline_root: Optional[str] = None,
             dry_run: bool = False) -> dict:
    """Creates (or with ``dry_run`` only describes) the recurring run; returns the request summary plus the
    server's ``recurring_run_id`` and ``experiment_id``."""
    spec = load_spec(package_path)
    params = check_params(spec, dict(params or {}))
    job_name = job_name or f"{spec.get('pipelineInfo', {}).get('name', 'ondevice-rec')} (scheduled)"
    summary = request_summary(spec, check_cron(cron), experiment, job_name, params,
                              pipeline_root or spec.get("defaultPipelineRoot"))
    if dry_run:
        return summary
    if not host:
        raise ValueError("a KFP host is required (--host), or a dry run")
    import kfp
    client = kfp.Client(host=host)
    experiment_id = client.create_experiment(name=experiment).experiment_id  # reuses an existing one
    recurring_run = client.create_recurring_run(
        experiment_id=experiment_id, job_name=job_name, cron_expression=cron, max_concurrency=1, no_catchup=True,
        params=params, pipeline_package_path=package_path, pipeline_root=summary["runtime_config"]["pipeline_root"])
    return {**summary, "experiment_id": experiment_id, "recurring_run_id": recurring_run.recurring_run_id}


def format_summary(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
