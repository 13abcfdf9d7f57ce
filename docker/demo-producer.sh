#!/bin/sh
# The compose `demo-producer` service: replay the bundled sample stream
# (tests/data/demo, mounted at /demo/data) into the compose Kafka with kcat,
# each event keyed by its client id as churnd expects (the same keying as
# scripts/demo.sh), then exit. Runs in churnd's image.
#   BOOTSTRAP        broker to produce to
#   CRM_TOPIC        where crm.jsonl goes
#   HELPDESK_TOPIC   where helpdesk.jsonl goes
set -eu
data=${DEMO_DATA:-/demo/data}
tab=$(printf '\t')
# "client_id":"X" becomes the key X; a line without one (the stream holds
# a few bad events on purpose) gets an empty key.
keyed() {
    sed -E "s/^(.*\"client_id\" *: *\"([^\"]+)\".*)\$/\\2${tab}\\1/; t; s/^/${tab}/" "$1"
}
produce() { # file topic
    echo "producing $(wc -l <"$1") events of $(basename "$1") to $2"
    keyed "$1" | kcat -P -b "$BOOTSTRAP" -t "$2" -K "$tab"
}
produce "$data/crm.jsonl" "$CRM_TOPIC"
produce "$data/helpdesk.jsonl" "$HELPDESK_TOPIC"
echo "done"
