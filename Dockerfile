# Shield on Debian 12: the same `make deps` / `make` steps as a developer machine.
#   docker build -t shield .
#   docker run --rm -p 8080:8080 -v "$PWD/conf/shield.conf:/etc/shield/shield.conf:ro" \
#       -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY shield
FROM debian:12 AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends make ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make deps && make clean && make

FROM debian:12
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        ca-certificates libevent-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 \
        libcurl4 libconfig9 libjemalloc2 libmaxminddb0 libbrotli1 libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home shield
COPY --from=build /src/build/shield /src/build/shieldctl /usr/local/bin/
COPY conf/shield.conf /etc/shield/shield.conf
USER shield
EXPOSE 8080 8443
ENTRYPOINT ["/usr/local/bin/shield"]
CMD ["-c", "/etc/shield/shield.conf"]
