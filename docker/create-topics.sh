#!/bin/sh
# The compose `topics` service: create churnd's topics on the compose Kafka
# and check they are usable, then exit. Runs in the apache/kafka image.
#   BOOTSTRAP          broker to talk to
#   INPUT_TOPICS       topics churnd consumes; one partition count for all,
#   INPUT_PARTITIONS   as churnd needs them co-partitioned
#   OUTPUT_TOPICS      alert and dead-letter topics
#   OUTPUT_PARTITIONS
set -eu
bin=/opt/kafka/bin

create() { # topic partitions
    "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create \
        --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1
    # --if-not-exists says nothing about a topic that already exists with
    # another partition count; for the input topics that would break
    # co-partitioning, so check what is there.
    n=$("$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe \
        --topic "$1" | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n 1)
    if [ "$n" != "$2" ]; then
        echo "topic $1 has ${n:-no} partitions, expected $2" >&2
        exit 1
    fi
    echo "topic $1: $n partitions"
}

for t in $INPUT_TOPICS; do create "$t" "$INPUT_PARTITIONS"; done
for t in $OUTPUT_TOPICS; do create "$t" "$OUTPUT_PARTITIONS"; done
