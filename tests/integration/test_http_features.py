"""HTTPS, redirects, proxies and per-job request headers, against real nginx
servers on 127.0.0.1: one TLS origin with a certificate made for the test,
one plain origin, one nginx working as a forward proxy, two plain origins
that log the headers they receive.

    dopt ──https──> nginx (TLS, self-signed cert for 127.0.0.1)
         ──http───> nginx (plain)            /auth/ wants "X-Token: secret"
         ──http───> nginx (forward proxy) ──> nginx (plain)
         ──http───> nginx (first) ──302──> nginx (other port): headers logged
"""

import os
import unittest
from unittest import mock

import harness
from harness import IntegrationTest, Nginx, MiB, TlsNginx, make_file

DOPT_E_UNSUPPORTED_SCHEME = -9
DOPT_E_TLS = -23


class HeaderNginx(Nginx):
    """Plain nginx whose /auth/ answers 403 unless the request carries
    "X-Token: secret"."""

    def _conf(self):
        return super()._conf().replace(
            "location /forbidden/",
            f"location /auth/ {{ alias {self.docroot}/; "
            "if ($http_x_token != \"secret\") { return 403; } }\n        location /forbidden/")


class HeaderLogNginx(Nginx):
    """Plain nginx that logs the X-Api-Key and PRIVATE-TOKEN headers of each
    request ("-" when absent). /here/NAME redirects (302) to /NAME on itself,
    /elsewhere/NAME to `elsewhere` + NAME."""

    def __init__(self, workdir, docroot, elsewhere=""):
        super().__init__(workdir, docroot)
        self.elsewhere = elsewhere
        self.headers_log = os.path.join(self.dir, "headers.log")

    def _conf(self):
        conf = super()._conf().replace(
            "    access_log ",
            "    log_format headers '$request_uri\\t$http_x_api_key\\t$http_private_token';\n"
            f"    access_log {self.headers_log} headers;\n"
            "    access_log ", 1)
        return conf.replace(
            "location /forbidden/",
            "location /here/ { rewrite ^/here/(.*)$ /$1 redirect; }\n"
            f"        location /elsewhere/ {{ rewrite ^/elsewhere/(.*)$ {self.elsewhere}$1 redirect; }}\n"
            "        location /forbidden/")

    def headers_seen(self, path):
        """[(X-Api-Key, PRIVATE-TOKEN)] of each request for `path`."""
        try:
            with open(self.headers_log) as f:
                rows = [line.rstrip("\n").split("\t") for line in f]
        except FileNotFoundError:
            return []
        return [(r[1], r[2]) for r in rows if len(r) == 3 and r[0] == path]


class ProxyNginx(Nginx):
    """nginx as a forward HTTP proxy (absolute-form requests to IP hosts)."""

    def _conf(self):
        return super()._conf().replace(
            "location / { }",
            "location / { proxy_pass http://$http_host; proxy_buffering off; }")


class HttpFeaturesTest(IntegrationTest):

    def start_tls(self, downgrade_to=""):
        n = TlsNginx(self.sb.path("tls"), self.www, downgrade_to)
        self.sb.children.append(n)
        return n.start()

    def test_https_download_with_the_origin_ca_configured(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 3 * MiB)
        tls = self.start_tls()
        self.start_agent(f'[http]\nca_file = "{tls.cert}"\n')
        out = os.path.join(self.dest(), "f.bin")
        rc, _, err = self.dopt("get", tls.url("f.bin"), "-o", out)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(out, sha)

    def test_an_untrusted_certificate_is_refused_with_no_insecure_fallback(self):
        make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        tls = self.start_tls()
        self.start_agent()  # the system CA store does not know the test's CA
        out = os.path.join(self.dest(), "f.bin")
        rc, _, err = self.dopt("get", tls.url("f.bin"), "-o", out, timeout=60)
        self.assertEqual(rc, 1, err)
        job = self.agent.job_for(out)
        self.assertEqual(job["state"], "error")
        e = job["error"]
        self.assertEqual(e["context"], "transport")
        self.assertEqual(e["code"], DOPT_E_TLS)
        self.assertEqual(e["protocol"], "https")
        self.assertIn("certificate", e["description"].lower())
        self.assertIn(tls.url("f.bin"), e["description"])
        self.assertFalse(os.path.exists(out))
        self.assertEqual(tls.body_bytes_sent("/f.bin"), 0, "no byte may cross an untrusted TLS link")

    def test_https_may_not_redirect_to_plain_http(self):
        make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        plain = self.sb.nginx(self.www, name="plain")
        tls = self.start_tls(downgrade_to=plain.url(""))
        self.start_agent(f'[http]\nca_file = "{tls.cert}"\n')
        out = os.path.join(self.dest(), "f.bin")
        rc, _, err = self.dopt("get", tls.url("down/f.bin"), "-o", out, timeout=60)
        self.assertEqual(rc, 1, err)
        e = self.agent.job_for(out)["error"]
        self.assertEqual(e["context"], "remote_file")
        self.assertEqual(e["code"], DOPT_E_UNSUPPORTED_SCHEME)
        self.assertIn("redirected from https to http (no https to http downgrade)", e["description"])
        self.assertEqual(plain.body_bytes_sent("/f.bin"), 0)
        self.assertFalse(os.path.exists(out))

    def test_a_job_sends_its_own_request_headers(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        n = HeaderNginx(self.sb.path("hdr"), self.www)
        self.sb.children.append(n)
        n.start()
        self.start_agent()
        with_token = os.path.join(self.dest(), "a.bin")
        rc, _, err = self.dopt("get", n.url("auth/f.bin"), "-o", with_token,
                               "--header", "X-Token: secret")
        self.assertEqual(rc, 0, err)
        self.assertFileSha(with_token, sha)
        without = os.path.join(self.dest(), "b.bin")
        rc, _, _ = self.dopt("get", n.url("auth/f.bin"), "-o", without)
        self.assertEqual(rc, 1)
        self.assertEqual(self.agent.job_for(without)["error"]["code"], 403)

    def test_a_redirect_to_another_origin_carries_none_of_the_jobs_headers(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 1 * MiB)
        other = HeaderLogNginx(self.sb.path("other"), self.www)
        self.sb.children.append(other)
        other.start()
        first = HeaderLogNginx(self.sb.path("first"), self.www, elsewhere=other.url(""))
        self.sb.children.append(first)
        first.start()
        self.start_agent()
        secrets = ("X-Api-Key: key-123", "PRIVATE-TOKEN: token-456")
        headers = [a for h in secrets for a in ("--header", h)]

        # Same host, another port: another origin. The download still works...
        out = os.path.join(self.dest(), "away.bin")
        rc, _, err = self.dopt("get", first.url("elsewhere/f.bin"), "-o", out, *headers)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(out, sha)
        # ...the first origin got the headers, the redirect's target none.
        self.assertEqual(set(first.headers_seen("/elsewhere/f.bin")), {("key-123", "token-456")})
        seen_elsewhere = other.headers_seen("/f.bin")
        self.assertTrue(seen_elsewhere, "the redirect was not followed")
        self.assertEqual(set(seen_elsewhere), {("-", "-")}, "the job's headers left their origin")

        # The control: a redirect within the same origin keeps them.
        out = os.path.join(self.dest(), "here.bin")
        rc, _, err = self.dopt("get", first.url("here/f.bin"), "-o", out, *headers)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(out, sha)
        self.assertEqual(set(first.headers_seen("/f.bin")), {("key-123", "token-456")})

    def test_the_configured_proxy_carries_the_transfer(self):
        sha = make_file(os.path.join(self.www, "f.bin"), 2 * MiB)
        origin = self.sb.nginx(self.www, name="origin")
        proxy = ProxyNginx(self.sb.path("proxy"), self.sb.path("proxy-www"))
        self.sb.children.append(proxy)
        proxy.start()
        # The harness tells children no_proxy=127.0.0.1 (which libcurl honours
        # even for a configured proxy); this agent must not get it.
        env = {k: v for k, v in harness.clean_env().items() if k.lower() != "no_proxy"}
        with mock.patch.object(harness, "clean_env", return_value=env):
            self.start_agent(f'[http]\nproxy = "http://127.0.0.1:{proxy.port}"\n')
        out = os.path.join(self.dest(), "f.bin")
        rc, _, err = self.dopt("get", origin.url("f.bin"), "-o", out)
        self.assertEqual(rc, 0, err)
        self.assertFileSha(out, sha)
        proxied = [e for e in proxy.log_entries() if e[4].endswith("/f.bin")]
        self.assertTrue(proxied, "the request did not go through the proxy")
        self.assertEqual(sum(e[1] for e in proxied), 2 * MiB)


if __name__ == "__main__":
    unittest.main()
