# churnd's container image, used by docker-compose.yml.
#
# Two stages: the build stage installs exactly what `make deps` installs
# (scripts/deps.sh reading scripts/debian-packages, so the list cannot drift
# from the one developers use) and runs `make all`; the runtime stage is a
# slim Debian with only the shared libraries build/churnd needs, plus kcat
# for the demo producer and for looking at topics from inside the container.
# scripts/check-compose.sh (part of `make check`) verifies both lists.
#
# Both stages use the same Debian release, so the binary runs against the
# library versions it was linked with.

FROM debian:12.11-slim AS build
WORKDIR /src
# The package list first, alone, so that editing sources does not reinstall
# the toolchain. This is the whole development list (clang, promtool and
# docker-compose included): heavier than `make all` needs, but it is the
# same list `make deps` installs, and this stage is thrown away.
COPY scripts/deps.sh scripts/debian-packages scripts/
RUN scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY Makefile ./
COPY include include
COPY daemon daemon
RUN make -j"$(nproc)" all

FROM debian:12.11-slim
# The libraries build/churnd links against (readelf -d: DT_NEEDED), by
# Debian package; libc6 comes with the base image. libsystemd0 is on the
# Makefile's link line for sd_notify. kcat is not needed by churnd itself.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        librdkafka1 librocksdb7.8 libuv1 libcjson1 libyaml-0-2 \
        libhttp-parser2.9 libsystemd0 kcat \
 && rm -rf /var/lib/apt/lists/*
# A system user without a login shell; the state directory is its home.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/churnd \
        --shell /usr/sbin/nologin churnd \
 && mkdir -p /var/lib/churnd/state /etc/churnd \
 && chown -R churnd:churnd /var/lib/churnd
COPY --from=build /src/build/churnd /usr/local/bin/churnd
# Defaults baked in so the image runs on its own; docker-compose.yml mounts
# the repository's rules/ and docker/churnd.yaml over them, read-only.
COPY rules /etc/churnd/rules
COPY docker/churnd.yaml /etc/churnd/churnd.yaml
USER churnd
WORKDIR /var/lib/churnd
# A named volume here keeps client state, timers and offsets across
# container restarts (churnd resumes from the offsets stored with them).
VOLUME ["/var/lib/churnd"]
EXPOSE 9464
# /readyz without curl: bash (essential in Debian) speaks enough HTTP over
# /dev/tcp. It assumes docker/churnd.yaml's http.listen port.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=12 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM makes churnd drain (finish the batch, flush, commit), bounded by
# shutdown.timeout (30s): give `docker stop` longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["churnd"]
CMD ["run", "-c", "/etc/churnd/churnd.yaml"]
