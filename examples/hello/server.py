"""A tiny web dyno: answers on $PORT with a greeting from the GREETING config var."""
import http.server
import os
import sys


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "{} from {} ({} {})\n".format(
            os.environ.get("GREETING", "hello"),
            os.environ.get("DYNO", "?"),
            os.environ.get("ROBOKU_APP", "?"),
            os.environ.get("ROBOKU_RELEASE", "?"),
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


port = int(os.environ.get("PORT", "5000"))
print("listening on port %d as %s" % (port, os.environ.get("DYNO")), flush=True)
sys.stdout.flush()
http.server.ThreadingHTTPServer(("127.0.0.1", port), Hello).serve_forever()
