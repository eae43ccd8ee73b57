# sharepoint-proxy: mirrors MinIO bucket notifications into a SharePoint Online library.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    STATE_DIR=/var/lib/sharepoint-proxy \
    PROMETHEUS_MULTIPROC_DIR=/tmp/sharepoint-proxy-metrics \
    PORT=8080

WORKDIR /app

# A fixed uid/gid, so operators can grant it the certificate key and bind-mounted state.
RUN groupadd --system --gid 10001 sharepoint-proxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sharepoint-proxy \
    && mkdir -p /var/lib/sharepoint-proxy /tmp/sharepoint-proxy-metrics \
    && chown 10001:10001 /var/lib/sharepoint-proxy /tmp/sharepoint-proxy-metrics

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY gunicorn.conf.py ./
COPY sharepoint_proxy/ ./sharepoint_proxy/

USER 10001:10001

# The journal and ledger: keep them across container restarts and upgrades.
VOLUME ["/var/lib/sharepoint-proxy"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=4)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "sharepoint_proxy.wsgi:app"]
