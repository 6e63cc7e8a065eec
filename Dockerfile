# Outpost: multi-stage build, non-root runtime, health check over gRPC.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY server ./server
COPY rules_engine ./rules_engine
COPY models ./models
COPY features ./features
COPY review ./review
COPY loadtest ./loadtest
COPY bench ./bench
RUN python -m venv /opt/outpost \
 && /opt/outpost/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/outpost/bin/pip install --no-cache-dir grpcio-tools \
 && mkdir -p gen \
 && /opt/outpost/bin/python -m grpc_tools.protoc -Iproto --python_out=gen --pyi_out=gen --grpc_python_out=gen proto/outpost/v1/outpost.proto \
 && touch gen/outpost/__init__.py gen/outpost/v1/__init__.py \
 && /opt/outpost/bin/pip install --no-cache-dir . \
 && cp -r gen/outpost "$(/opt/outpost/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outpost"

FROM python:3.11-slim-bookworm
# A CJK font, so that report charts are drawn in Chinese as well as English.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei && rm -rf /var/lib/apt/lists/*
RUN useradd --system --create-home --uid 10001 outpost
COPY --from=build /opt/outpost /opt/outpost
ENV PATH=/opt/outpost/bin:$PATH \
    OUTPOST_ADDR=0.0.0.0:50051 \
    OUTPOST_DATA_DIR=/var/lib/outpost \
    OUTPOST_CACHE_DIR=/var/lib/outpost/cache
RUN mkdir -p /var/lib/outpost && chown outpost /var/lib/outpost
USER outpost
EXPOSE 50051 9464
# Terminate TLS in front of the container or mount certificates and set OUTPOST_TLS_CERT / OUTPOST_TLS_KEY.
ENV OUTPOST_ALLOW_PLAINTEXT_REMOTE=true
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import grpc,sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c=grpc.insecure_channel('127.0.0.1:50051'); s=g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=2).status; sys.exit(0 if s==h.HealthCheckResponse.SERVING else 1)"
STOPSIGNAL SIGTERM
CMD ["outpost", "serve"]
