"""Drives webhookd's GitHub face with PyGithub, changing only the base URL: create, list,
get, edit, ping, test and delete a repository hook, with token and basic authentication.

Usage: pygithub_hooks.py BASE_URL TOKEN OWNER/REPO CALLBACK_URL; prints a JSON report."""

import json
import sys
import time

from github import Auth, Github, GithubException

base_url, token, full_name, callback = sys.argv[1:5]

# `Authorization: token ...` for one client, basic auth with the token as password for the
# other: both are how PyGithub users authenticate.
# Lazy: the repository object is not fetched (webhookd serves hooks, not repositories).
by_token = Github(base_url=base_url, auth=Auth.Token(token), lazy=True)
by_login = Github(base_url=base_url, auth=Auth.Login("octocat", token), lazy=True)

repo = by_token.get_repo(full_name)
hook = repo.create_hook(
    "web",
    {"url": callback, "content_type": "json", "secret": "pygithub-secret"},
    events=["push", "issues"],
    active=True,
)
report = {"created_events": hook.events}

same_repo = by_login.get_repo(full_name)
report["listed"] = same_repo.get_hooks().totalCount
fetched = same_repo.get_hook(hook.id)
assert fetched.events == ["push", "issues"], fetched.events
assert fetched.last_response.status in ("unused", "active"), fetched.last_response.status

hook.edit("web", {"url": callback, "content_type": "json", "secret": "pygithub-secret"},
          add_events=["release"])
report["edited_events"] = hook.events
report["config_secret"] = hook.config.get("secret")
hook.ping()
hook.test()

# The deliveries of the pings: recorded a moment after they are answered.
deliveries = []
for _ in range(100):
    deliveries = list(same_repo.get_hook_deliveries(hook.id))
    if len(deliveries) >= 2:
        break
    time.sleep(0.1)
report["deliveries"] = [d.event for d in deliveries]
detail = same_repo.get_hook_delivery(hook.id, deliveries[0].id)
report["delivery_guid_matches"] = detail.guid == deliveries[0].guid
report["delivery_request_event"] = detail.request.headers.get("x-github-event")
# PyGithub has no redeliver method: its requester sends GitHub's POST .../attempts.
_, answer = by_token.requester.requestJsonAndCheck(
    "POST", f"{base_url}/repos/{full_name}/hooks/{hook.id}/deliveries/{deliveries[0].id}/attempts"
)
report["redelivered"] = answer == {}

hook.delete()
try:
    # A lazy object is fetched when a field is read.
    same_repo.get_hook(hook.id).events
    report["deleted"] = False
except GithubException as e:
    report["deleted"] = e.status == 404

print(json.dumps(report))
