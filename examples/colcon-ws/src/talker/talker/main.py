"""Serves what the workspace's C++ `greet` prints, on 127.0.0.1:$PORT. Needs the sourced
workspace: `talk` itself, this module and `greet` are found only through install/setup.sh."""
import http.server
import os
import subprocess
import sys


def greeting():
    out = subprocess.run(["greet"], capture_output=True, text=True, check=True).stdout
    return out.strip() + " via talker"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = greeting().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    if sys.argv[1:] == ["once"]:
        print(greeting())
        return
    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.serve_forever()
