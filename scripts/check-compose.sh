#!/bin/sh
# What `make check` can verify of the Docker packaging on a machine without a
# Docker engine: nothing here builds an image or starts a container.
#
#  - docker-compose.yml is valid for Debian's docker-compose (config -q);
#  - docker/churnd.yaml loads with churnd's own config loader;
#  - the Dockerfile's build stage installs exactly scripts/debian-packages,
#    the list `make deps` installs, and runs `make all`;
#  - its runtime stage installs a Debian package for every shared library
#    the built binary needs (readelf DT_NEEDED, mapped with dpkg -S), runs
#    as a non-root user, and exposes the HTTP port churnd listens on;
#  - the compose churnd service is built from that Dockerfile, mounts
#    ./rules read-only where churnd reads its rules, keeps its state in a
#    named volume, and the topics service creates exactly the topics churnd
#    uses (the input ones with one partition count: co-partitioned);
#  - images are pinned and published ports are bound to 127.0.0.1.
#
# usage: check-compose.sh   (CHURND_BIN: the built churnd, build/churnd)
set -eu
cd "$(dirname "$0")/.."
bin=${CHURND_BIN:-build/churnd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "check-compose: $*" >&2; exit 1; }

command -v docker-compose >/dev/null ||
    fail "docker-compose is not installed (scripts/debian-packages lists it; run make deps)"
[ -x "$bin" ] || fail "$bin is not built"

docker-compose -f docker-compose.yml config -q ||
    fail "docker-compose.yml is rejected by $(docker-compose version --short)"
docker-compose -f docker-compose.yml config >"$tmp/compose.yml"

# The container's config file, read by the daemon's loader (replay -c loads
# it exactly as run -c does, without needing a broker), and the rules the
# image ships.
"$bin" replay -c docker/churnd.yaml -r rules /dev/null >/dev/null 2>"$tmp/replay.err" || {
    cat "$tmp/replay.err" >&2
    fail "docker/churnd.yaml or rules/ does not load"
}
for f in docker/*.sh; do
    sh -n "$f" || fail "$f: shell syntax error"
done

"$bin" config >"$tmp/config.txt"

# Each library the binary asks for by name (DT_NEEDED, not ldd's whole
# closure: the rest comes with these packages' own dependencies), with the
# Debian package that holds it here. A merged /usr puts the file under /usr
# while ldd may print the /lib path.
readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' >"$tmp/needed"
[ -s "$tmp/needed" ] || fail "readelf found no shared libraries in $bin"
: >"$tmp/needed-pkgs"
while read -r so; do
    path=$(ldd "$bin" | awk -v so="$so" '$1 == so && $2 == "=>" { print $3 }')
    [ -n "$path" ] || fail "ldd does not resolve $so"
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null) ||
        fail "no Debian package holds $path ($so)"
    printf '%s %s\n' "$so" "${pkg%%:*}" >>"$tmp/needed-pkgs"
done <"$tmp/needed"

# python3 from Debian: python3-yaml comes with the docker-compose package,
# so the parser is there wherever this check can run.
/usr/bin/python3 - "$tmp" "$(pwd)" <<'PY'
import os, re, shlex, sys
import yaml

tmp, root = sys.argv[1], sys.argv[2]
errors = []
def err(msg):
    errors.append(msg)

# ---- what churnd runs with in the container --------------------------------

defaults, option_envs = {}, set()
for line in open(os.path.join(tmp, "config.txt")):
    m = re.match(r"^(\S+) = (.*)$", line)
    if m:
        defaults[m.group(1)] = m.group(2)
    m = re.search(r"env (CHURND_[A-Z0-9_]+)$", line.rstrip())
    if m:
        option_envs.add(m.group(1))

compose = yaml.safe_load(open(os.path.join(tmp, "compose.yml")))
services = compose.get("services", {})
for name in ("kafka", "topics", "churnd", "demo-producer"):
    if name not in services:
        err("docker-compose.yml: no %s service" % name)
if errors:
    print("\n".join("check-compose: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
churnd = services["churnd"]

def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}

churnd_env = env_of(churnd)
for k in churnd_env:
    if k.startswith("CHURND_") and k not in option_envs \
            and not k.startswith("CHURND_KAFKA_"):
        err("churnd service: %s is not a churnd option (see churnd config)" % k)

file_cfg = yaml.safe_load(open("docker/churnd.yaml")) or {}
def file_value(dotted):
    # Nested (input: {topics: ...}) or spelled with dots at any level.
    def walk(node, parts):
        if not parts:
            return node
        if not isinstance(node, dict):
            return None
        for i in range(len(parts), 0, -1):
            key = ".".join(parts[:i])
            if key in node:
                found = walk(node[key], parts[i:])
                if found is not None:
                    return found
        return None
    return walk(file_cfg, dotted.split("."))

def effective(dotted, env_name):
    """The option's value in the container: environment, file, default."""
    if env_name in churnd_env:
        return churnd_env[env_name]
    v = file_value(dotted)
    if v is not None:
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return defaults.get(dotted, "")

input_topics = [t for t in effective("input.topics", "CHURND_INPUT_TOPICS").split(",") if t]
alerts_topic = effective("output.alerts_topic", "CHURND_OUTPUT_ALERTS_TOPIC")
dead_topic = effective("output.deadletter_topic", "CHURND_OUTPUT_DEADLETTER_TOPIC")
rules_dir = effective("rules.dir", "CHURND_RULES_DIR")
state_dir = effective("state.dir", "CHURND_STATE_DIR")
http_listen = effective("http.listen", "CHURND_HTTP_LISTEN")
bootstrap = effective("kafka.bootstrap.servers", "CHURND_KAFKA_BOOTSTRAP_SERVERS")
if not bootstrap:  # the default is shown as "bootstrap.servers: HOST:PORT"
    bootstrap = defaults.get("kafka.<property>", "").split(": ", 1)[-1]

# ---- the Dockerfile ---------------------------------------------------------

def instructions(path):
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out, cur = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out

stages = []  # {"from": image, "name": alias, "ins": [...]}
for word, rest in instructions("Dockerfile"):
    if word == "FROM":
        parts = rest.split()
        stages.append({"from": parts[0],
                       "name": parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None,
                       "ins": []})
    elif stages:
        stages[-1]["ins"].append((word, rest))
if len(stages) < 2:
    err("Dockerfile: expected a build stage and a runtime stage, found %d stage(s)" % len(stages))
    stages = stages + [{"from": "", "name": None, "ins": []}] * (2 - len(stages))
runtime = stages[-1]
built_from = [re.search(r"--from=(\S+)", rest).group(1) for word, rest in runtime["ins"]
              if word == "COPY" and "--from=" in rest]
build = next((s for s in stages[:-1] if s["name"] in built_from), None)
if build is None:
    err("Dockerfile: the last stage copies nothing from an earlier stage")
    build = stages[0]

aliases = {s["name"] for s in stages if s["name"]}
for s in stages:
    image = s["from"]
    if image in aliases:
        continue
    tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
    if "@sha256:" not in image and (not tag or tag == "latest"):
        err("Dockerfile: FROM %s is not pinned to a version" % image)
    if re.split(r"[:@]", image)[0] != "debian":
        err("Dockerfile: FROM %s: churnd's stages are Debian" % image)

def apt_installs(stage):
    pkgs = []
    for word, rest in stage["ins"]:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", rest):
            toks = shlex.split(cmd)
            if "apt-get" in toks and "install" in toks[toks.index("apt-get"):]:
                after = toks[toks.index("install", toks.index("apt-get")) + 1:]
                pkgs += [t for t in after if not t.startswith("-")]
    return pkgs

def runs(stage, pattern):
    return any(word == "RUN" and re.search(pattern, rest) for word, rest in stage["ins"])

dev_list = [l.strip() for l in open("scripts/debian-packages")
            if l.strip() and not l.lstrip().startswith("#")]
build_pkgs = apt_installs(build)
if runs(build, r"(^|[\s/])scripts/deps\.sh\b"):
    copied = " ".join(rest for word, rest in build["ins"] if word == "COPY")
    if "scripts/debian-packages" not in copied or "scripts/deps.sh" not in copied:
        err("Dockerfile build stage runs scripts/deps.sh without copying it "
            "and scripts/debian-packages")
    build_pkgs += dev_list
if sorted(set(build_pkgs)) != sorted(set(dev_list)):
    extra = sorted(set(build_pkgs) - set(dev_list))
    missing = sorted(set(dev_list) - set(build_pkgs))
    err("Dockerfile build stage packages differ from scripts/debian-packages "
        "(make deps): extra %s, missing %s" % (extra or "none", missing or "none"))
if not runs(build, r"\bmake\b.*\ball\b"):
    err("Dockerfile build stage does not run `make all`")

runtime_pkgs = set(apt_installs(runtime))
# Every Debian image has the C library: the essential packages need it.
base_pkgs = {"libc6"}
for line in open(os.path.join(tmp, "needed-pkgs")):
    so, pkg = line.split()
    if re.match(r"lib(a|ub|t|l)san\.so", so):
        continue  # a sanitizer build (make check-asan); the image's is not one
    if pkg not in runtime_pkgs and pkg not in base_pkgs:
        err("Dockerfile runtime stage does not install %s, which holds %s "
            "(needed by churnd)" % (pkg, so))
for p in sorted(runtime_pkgs):
    if p.endswith("-dev") or p in ("build-essential", "gcc", "clang", "make"):
        err("Dockerfile runtime stage installs build tooling: %s" % p)
users = [rest for word, rest in runtime["ins"] if word == "USER"]
if not users or users[-1].split(":")[0] in ("root", "0"):
    err("Dockerfile runtime stage must end as a non-root USER")
exposed = " ".join(rest for word, rest in runtime["ins"] if word == "EXPOSE").split()
http_port = http_listen.rsplit(":", 1)[-1]
if http_port not in [e.split("/")[0] for e in exposed]:
    err("Dockerfile: EXPOSE %s does not include http.listen's port %s"
        % (" ".join(exposed) or "nothing", http_port))

# ---- docker-compose.yml -----------------------------------------------------

def volumes(svc):
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("source", ""), v.get("target", ""),
                        "ro" if v.get("read_only") else "rw"))
        else:
            parts = v.split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0],
                        parts[2] if len(parts) > 2 else "rw"))
    return out

def condition(svc, on):
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return "service_started" if on in dep else None
    return (dep.get(on) or {}).get("condition") if on in dep else None

b = churnd.get("build")
if not b:
    err("churnd service is not built from the repository")
else:
    ctx = b if isinstance(b, str) else b.get("context", "")
    df = "Dockerfile" if isinstance(b, str) else b.get("dockerfile", "Dockerfile")
    if os.path.realpath(ctx) != os.path.realpath(root) or df != "Dockerfile":
        err("churnd service builds %s/%s, not the repository's Dockerfile" % (ctx, df))

rules_src = os.path.join(root, "rules")
mounts = volumes(churnd)
rule_mounts = [m for m in mounts if os.path.realpath(m[0]) == os.path.realpath(rules_src)]
if not rule_mounts:
    err("churnd service does not mount ./rules")
for src, dst, mode in rule_mounts:
    if dst.rstrip("/") != rules_dir.rstrip("/"):
        err("churnd service mounts ./rules at %s but rules.dir is %s" % (dst, rules_dir))
    if "ro" not in mode.split(","):
        err("churnd service mounts ./rules read-write; it must be read-only (:ro)")
named = set((compose.get("volumes") or {}).keys())
if not any(src in named and (state_dir + "/").startswith(dst.rstrip("/") + "/")
           for src, dst, mode in mounts):
    err("churnd service: state.dir %s is not on a named volume" % state_dir)
cfg_mounts = [m for m in mounts if m[1] == "/etc/churnd/churnd.yaml"]
if cfg_mounts and os.path.realpath(cfg_mounts[0][0]) != os.path.realpath("docker/churnd.yaml"):
    err("churnd service mounts %s as its config, not docker/churnd.yaml" % cfg_mounts[0][0])

# Bind-mounted files must exist (a renamed script is otherwise found only by
# `docker compose up`, as an empty directory).
for name, svc in services.items():
    for src, dst, mode in volumes(svc):
        if src.startswith("/") and not os.path.exists(src):
            err("%s service mounts %s, which does not exist" % (name, src))

host = http_listen.rsplit(":", 1)[0]
if host not in ("0.0.0.0", "::", "[::]", ""):
    err("http.listen is %s in the container: the published port cannot reach it"
        % http_listen)
for name, svc in services.items():
    for p in svc.get("ports") or []:
        spec = p if isinstance(p, str) else "%s:%s:%s" % (
            p.get("host_ip") or "0.0.0.0", p.get("published", ""), p.get("target", ""))
        if not spec.startswith("127.0.0.1:"):
            err("%s service publishes %s beyond 127.0.0.1" % (name, spec))
    image = svc.get("image", "")
    tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
    if not svc.get("build") and (not tag or tag == "latest"):
        err("%s service: image %r is not pinned to a version" % (name, image))

# Start order: Kafka healthy, then topics created, then churnd, then data.
if not services["kafka"].get("healthcheck") or \
        services["kafka"]["healthcheck"].get("test") in (None, ["NONE"]):
    err("kafka service has no healthcheck")
if condition(services["topics"], "kafka") != "service_healthy":
    err("topics service does not wait for kafka to be healthy")
if condition(churnd, "topics") != "service_completed_successfully":
    err("churnd service does not wait for the topics service to complete")
if condition(services["demo-producer"], "churnd") not in ("service_healthy", "service_started"):
    err("demo-producer service does not wait for churnd")

# The topics: exactly churnd's, input ones co-partitioned.
tenv = env_of(services["topics"])
created_in = tenv.get("INPUT_TOPICS", "").split()
created_out = tenv.get("OUTPUT_TOPICS", "").split()
if sorted(created_in) != sorted(input_topics):
    err("topics service creates input topics %s, churnd consumes %s"
        % (created_in, input_topics))
if sorted(created_out) != sorted([alerts_topic, dead_topic]):
    err("topics service creates output topics %s, churnd publishes to %s"
        % (created_out, [alerts_topic, dead_topic]))
if not re.fullmatch(r"[1-9][0-9]*", tenv.get("INPUT_PARTITIONS", "")):
    err("topics service: INPUT_PARTITIONS must be one partition count for "
        "every input topic (co-partitioning)")
penv = env_of(services["demo-producer"])
for k in ("CRM_TOPIC", "HELPDESK_TOPIC"):
    if penv.get(k) not in input_topics:
        err("demo-producer %s=%s is not one of churnd's input topics %s"
            % (k, penv.get(k), input_topics))

# Everyone talks to the broker by an address it advertises.
advertised = env_of(services["kafka"]).get("KAFKA_ADVERTISED_LISTENERS", "")
addrs = {a.split("://", 1)[1] for a in advertised.split(",") if "://" in a}
for who, bs in (("churnd (kafka.bootstrap.servers)", bootstrap),
                ("topics (BOOTSTRAP)", tenv.get("BOOTSTRAP", "")),
                ("demo-producer (BOOTSTRAP)", penv.get("BOOTSTRAP", ""))):
    for a in bs.split(","):
        if a not in addrs:
            err("%s uses %s, which kafka does not advertise (%s)" % (who, a, advertised))

if errors:
    print("\n".join("check-compose: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY
echo "check-compose: docker-compose.yml and Dockerfile agree with churnd" \
     "($(docker-compose version --short), $(wc -l <"$tmp/needed") libraries covered)"
