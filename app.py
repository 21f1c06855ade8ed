"""The web demo: pick a digit and a guidance strength, watch it emerge from noise, keep the GIF.

    python app.py                                   # serves http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080 --weights my-weights.safetensors

GRADIO_SERVER_NAME and GRADIO_SERVER_PORT set the defaults of --host and --port. This file reads
the flags, loads the weights and serves the page, which webapp/ builds: a module per tab.
"""

import os
import signal
import sys

# The imports below take from 3 s to half a minute on a small CPU: first say why nothing shows.
if __name__ == "__main__":
    print("Starting the MNIST diffusion demo: loading PyTorch and Gradio…", flush=True)

from diffusion import DEFAULT_WEIGHTS, Pipeline, cli
from webapp import LAUNCH_OPTIONS, build_app, tools
from webapp.server import check_can_listen, log_refusals, port, share_memory_pools


def main() -> None:
    p = cli.ArgumentParser(prog="python app.py", description="Serve the MNIST diffusion demo.")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on: 127.0.0.1 (this computer only) or 0.0.0.0 (the network)")
    p.add_argument("--port", type=port, default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    p.add_argument("--device", type=cli.device, help=cli.DEVICE_HELP)
    p.add_argument("--mcp", action="store_true",
                   help="also offer the app's tools to AI assistants (MCP), at /gradio_api/mcp/ (docs/assistants.md)")
    args = p.parse_args()
    check_can_listen(p, args.host, args.port)

    share_memory_pools()
    print(f"Loading {args.weights}…", flush=True)
    pipe = Pipeline.load(args.weights, device=args.device, shared=True)
    print(f"Loaded the model on {pipe.device.type}.", flush=True)
    log_refusals()
    # SIGTERM (docker stop) then shuts the server down as Ctrl-C does, instead of waiting to be killed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app = build_app(pipe)
    app.launch(server_name=args.host, server_port=args.port, mcp_server=args.mcp, prevent_thread_lock=True,
               **LAUNCH_OPTIONS)
    if args.mcp:
        tools.offer_only_the_tools(app)
    print(f"Serving on {app.local_url} (Ctrl-C stops it)", flush=True)
    app.block_thread()  # returns once Ctrl-C or SIGTERM has closed the server
    # Leave at once: the native teardown of torch's libraries after that takes 1.2 s here,
    # which `docker stop` would wait out.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    cli.run(main, prog="python app.py")
