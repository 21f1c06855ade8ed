# The MNIST diffusion demo in a container:
#   docker build -t mnist-diffusion . && docker run -p 7860:7860 mnist-diffusion
# The same image trains; see the README's "Container" section.
ARG BASE=python:3.11-slim
FROM ${BASE}

# CPU-only PyTorch by default, which keeps the image small; for a GPU, build with
# --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu126 instead.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# Lets a build point pip at a settings file (local wheel stores, proxies); unset by default.
ARG PIP_CONFIG_FILE
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Dependencies first, code last: a code change rebuilds only the last, small layers.
RUN python3 -m venv /opt/venv
COPY requirements.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt

RUN useradd --create-home --uid 1000 app
WORKDIR /app
COPY weights/ weights/
COPY diffusion/ diffusion/
COPY webapp/ webapp/
COPY app.py train.py ./
# Readable by the app's user whatever the permissions in the build context (a checkout made
# with umask 077 has files only root may read).
RUN chmod -R a+rX /app
USER app

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
EXPOSE 7860
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]
# app.py turns SIGTERM into a clean shutdown, so `docker stop` does not wait and kill.
CMD ["python3", "app.py"]
