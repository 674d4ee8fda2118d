#!/bin/sh
# One-shot setup of the Temporal server for Orderflow: registers the custom search attributes
# the workflows write (SEARCH_ATTRIBUTES="Name=Type ..."). Runs in temporalio/admin-tools
# (Alpine, so POSIX sh). Safe to run again: an attribute that exists is left as it is.
#
# Why it exists at all: OrderWorkflow upserts these attributes on every status change, and a
# server that does not know one fails the workflow task until it is registered. The worker
# and the shim start only after this exits 0 (depends_on: service_completed_successfully).
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required (host:port of the frontend)}"
: "${TEMPORAL_NAMESPACE:=default}"
: "${SEARCH_ATTRIBUTES:?SEARCH_ATTRIBUTES is required (Name=Type ...)}"
: "${SETUP_WAIT_SECS:=300}"

cli() { temporal "$@" --address "$TEMPORAL_ADDRESS"; }

# Polls until "$@" succeeds, for at most SETUP_WAIT_SECS: a server that never comes up must
# stop `docker compose up` with a reason, not hang it.
wait_for() {
  what=$1
  shift
  waited=0
  until "$@" >/dev/null 2>&1; do
    if [ "$waited" -ge "$SETUP_WAIT_SECS" ]; then
      echo "error: ${what} not ready after ${SETUP_WAIT_SECS}s; last attempt said:" >&2
      "$@" >&2 || true
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
  echo "${what} is ready"
}

serving() { cli operator cluster health | grep -q SERVING; }
namespace_exists() { cli operator namespace describe --namespace "$TEMPORAL_NAMESPACE"; }

wait_for "Temporal at ${TEMPORAL_ADDRESS}" serving
# auto-setup creates the namespace in the background after the frontend starts serving, and
# search attributes on SQL visibility belong to a namespace: wait for it too.
wait_for "namespace ${TEMPORAL_NAMESPACE}" namespace_exists

for pair in $SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  if [ -z "$name" ] || [ "$name" = "$pair" ] || [ -z "$type" ]; then
    echo "error: ${pair} in SEARCH_ATTRIBUTES is not Name=Type" >&2
    exit 1
  fi
  if out=$(cli operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
    --name "$name" --type "$type" 2>&1); then
    echo "${name} (${type}) is registered"
  elif printf '%s' "$out" | grep -qi 'different type'; then
    # Workflows would fail every upsert of it: a human has to decide, not this script.
    echo "error: ${name} exists with another type than ${type}: ${out}" >&2
    exit 1
  elif printf '%s' "$out" | grep -qi 'already exists'; then
    # Older servers answer a repeat with an error instead of success.
    echo "${name} (${type}) was already registered"
  else
    echo "error: registering ${name} (${type}): ${out}" >&2
    exit 1
  fi
done

# Proof, not hope: each attribute must now be listed for the namespace. (A type conflict was
# already refused above; the listing's exact layout is the CLI's, so only the name is required.)
listed=$(cli operator search-attribute list --namespace "$TEMPORAL_NAMESPACE")
for pair in $SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  if ! line=$(printf '%s\n' "$listed" | grep -w -- "$name"); then
    echo "error: ${name} is not listed after registration:" >&2
    printf '%s\n' "$listed" >&2
    exit 1
  fi
  echo "listed: $(echo "$line" | tr -s ' ' | sed 's/^ //')"
done
echo "Temporal is set up for Orderflow (namespace ${TEMPORAL_NAMESPACE})"
