"""Reads a Harbor policy's executions, their tasks and a task's log through webhookd's Harbor
face with harbor-api-client (generated from Harbor's swagger), and the deprecated jobs with
harborapi.

Usage: harbor_executions.py BASE_URL TOKEN PROJECT POLICY_ID; prints a JSON report."""

import asyncio
import json
import sys

import harbor_client
from harborapi import HarborAsyncClient

base_url, token, project, policy_id = sys.argv[1:5]
policy_id = int(policy_id)

config = harbor_client.Configuration()
config.host = base_url
config.username = "robot$ci"
config.password = token
api = harbor_client.WebhookApi(harbor_client.ApiClient(config))

executions, _, headers = api.list_executions_of_webhook_policy_with_http_info(
    project, policy_id, page_size=10)
report = {"total": headers["X-Total-Count"], "executions": []}
for execution in executions:
    tasks = api.list_tasks_of_webhook_execution(project, policy_id, execution.id)
    entry = {
        "vendor_type": execution.vendor_type,
        "vendor_id": execution.vendor_id,
        "status": execution.status,
        "status_message": execution.status_message,
        "trigger": execution.trigger,
        "event_type": execution.extra_attrs["event_type"],
        "payload": execution.extra_attrs["payload"],
        "task_count": execution.metrics.task_count,
        "error_task_count": execution.metrics.error_task_count,
        "ended": not str(execution.end_time).startswith("0001"),
        "tasks": [{"status": t.status, "execution_id": t.execution_id, "run_count": t.run_count}
                  for t in tasks],
        "log": api.get_logs_of_webhook_task(project, policy_id, execution.id, tasks[-1].id)
        if tasks else None,
    }
    report["executions"].append(entry)


async def jobs():
    client = HarborAsyncClient(url=base_url, username="robot$ci", secret=token)
    listed = await client.get_webhook_jobs(project, policy_id=policy_id)
    return [{"policy_id": j.policy_id, "event_type": j.event_type,
             "notify_type": j.notify_type, "status": j.status} for j in listed]


report["jobs"] = asyncio.run(jobs())
print(json.dumps(report))
