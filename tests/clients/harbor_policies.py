"""Drives webhookd's Harbor face with Harbor's own Python clients, changing only the base URL:
harbor-api-client (generated from Harbor's swagger) and harborapi. Creates, lists, reads,
updates and deletes project webhook policies, reads the supported event types and the last
triggers, with a robot account's basic authentication.

Usage: harbor_policies.py BASE_URL TOKEN PROJECT CALLBACK_URL SLACK_URL; prints a JSON report."""

import asyncio
import json
import sys

import harbor_client
from harbor_client.rest import ApiException
from harborapi import HarborAsyncClient
from harborapi.exceptions import NotFound
from harborapi.models import WebhookPolicy, WebhookTargetObject

base_url, token, project, callback, slack = sys.argv[1:6]

config = harbor_client.Configuration()
config.host = base_url
config.username = "robot$ci"
config.password = token
api = harbor_client.WebhookApi(harbor_client.ApiClient(config))
report = {}

# Created with a query and a fragment on the address: Harbor keeps scheme://host/path.
policy = harbor_client.WebhookPolicy(
    name="ci",
    description="CI pipeline",
    enabled=True,
    event_types=["PUSH_ARTIFACT", "SCANNING_COMPLETED"],
    targets=[
        harbor_client.WebhookTargetObject(
            type="http",
            address=callback + "?token=x#part",
            auth_header="Bearer xyz",
            skip_cert_verify=False,
            payload_format="CloudEvents",
        ),
        harbor_client.WebhookTargetObject(type="slack", address=slack),
    ],
)
_, status, headers = api.create_webhook_policy_of_project_with_http_info(project, policy)
report["create_status"] = status
report["location"] = headers["Location"]
policy_id = int(headers["Location"].rsplit("/", 1)[1])

got = api.get_webhook_policy_of_project(project, policy_id)
report["got"] = {
    "id": got.id,
    "name": got.name,
    "description": got.description,
    "project_id": got.project_id,
    "enabled": got.enabled,
    "event_types": got.event_types,
    "creator": got.creator,
    "targets": [t.to_dict() for t in got.targets],
    "times": got.creation_time is not None and got.update_time is not None,
}
# By numeric id too (harbor-api-client sends X-Is-Resource-Name: false).
by_id = api.get_webhook_policy_of_project(str(got.project_id), policy_id,
                                          x_is_resource_name=False)
report["same_by_project_id"] = by_id.name == got.name

# Two more policies to page through.
for name in ["audit", "scans"]:
    api.create_webhook_policy_of_project(project, harbor_client.WebhookPolicy(
        name=name, enabled=name == "audit", event_types=["DELETE_ARTIFACT"],
        targets=[harbor_client.WebhookTargetObject(type="http", address=callback)]))
page, _, headers = api.list_webhook_policies_of_project_with_http_info(
    project, page=1, page_size=2, sort="name")
report["page_names"] = [p.name for p in page]
report["total"] = headers["X-Total-Count"]
report["link"] = headers["Link"]
report["fuzzy"] = [p.name for p in api.list_webhook_policies_of_project(project, q="name=~a")]
report["enabled_only"] = sorted(
    p.name for p in api.list_webhook_policies_of_project(project, q="enabled=true"))

# PUT: the whole policy, with its targets replaced (the Slack one becomes a Teams one).
got.description = "CI pipeline, v2"
got.event_types = ["PUSH_ARTIFACT"]
got.targets[1] = harbor_client.WebhookTargetObject(type="teams", address=slack)
_, status, _ = api.update_webhook_policy_of_project_with_http_info(project, policy_id, got)
report["update_status"] = status
updated = api.get_webhook_policy_of_project(project, policy_id)
report["updated"] = {
    "description": updated.description,
    "event_types": updated.event_types,
    "target_types": [t.type for t in updated.targets],
}

events = api.get_supported_event_types(project)
report["events"] = events.to_dict()
report["last_trigger"] = [
    {"policy_name": t.policy_name, "event_type": t.event_type, "enabled": t.enabled}
    for t in api.last_trigger(project)
]

try:
    api.create_webhook_policy_of_project(project, harbor_client.WebhookPolicy(
        name="audit", enabled=True, event_types=["PUSH_ARTIFACT"],
        targets=[harbor_client.WebhookTargetObject(type="http", address=callback)]))
    report["duplicate"] = "created"
except ApiException as e:
    report["duplicate"] = {"status": e.status, "body": json.loads(e.body)}


async def with_harborapi():
    """The same through harborapi (its webhook policy methods)."""
    client = HarborAsyncClient(url=base_url, username="robot$ci", secret=token)
    location = await client.create_webhook_policy(project, WebhookPolicy(
        name="from-harborapi", enabled=True, event_types=["PULL_ARTIFACT"],
        targets=[WebhookTargetObject(type="http", address=callback, payload_format="Default")]))
    new_id = int(location.rsplit("/", 1)[1])
    fetched = await client.get_webhook_policy(project, new_id)
    fetched.enabled = False
    await client.update_webhook_policy(project, new_id, fetched)
    disabled = (await client.get_webhook_policy(project, new_id)).enabled
    listed = [p.name for p in await client.get_webhook_policies(project, page_size=100)]
    supported = await client.get_webhook_supported_events(project)
    triggers = await client.get_webhook_policy_last_trigger(project)
    await client.delete_webhook_policy(project, new_id)
    try:
        await client.get_webhook_policy(project, new_id)
        gone = False
    except NotFound:
        gone = True
    return {
        "fetched_name": fetched.name,
        "disabled": disabled is False,
        "listed": sorted(listed),
        "event_types": [str(e.root if hasattr(e, "root") else e)
                        for e in supported.event_type],
        "triggers": len(triggers),
        "gone": gone,
    }


report["harborapi"] = asyncio.run(with_harborapi())

api.delete_webhook_policy_of_project(project, policy_id)
try:
    api.get_webhook_policy_of_project(project, policy_id)
    report["deleted"] = False
except ApiException as e:
    report["deleted"] = e.status == 404
print(json.dumps(report))
