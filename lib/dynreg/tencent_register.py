# One Tencent registration attempt over HTTP(S): a fresh timestamp and nonce, the request of
# the API the info selects, and the parsed credential.
from dynreg import tencent, http, clock, codec
from dynreg.config import say


def register(info, ca, opts, attempt, timeout_ms):
    timestamp, nonce = clock.unix_time(), codec.random_int()
    if info.api == "legacy":
        url, headers, body = tencent.legacy_request(info.product, info.device_name, info.product_secret,
                                                    timestamp, nonce, endpoint=info.register_url)
    else:
        url, headers, body = tencent.register_request(info.product, info.device_name, info.product_secret,
                                                      timestamp, nonce, algorithm=info.algorithm,
                                                      endpoint=info.register_url)
    # Plain HTTP is allowed here: the answer's credential is AES-encrypted with the ProductSecret.
    say(opts, "registering %s/%s with Tencent (%s API, %s, attempt %d of %d)"
        % (info.product, info.device_name, info.api, "HTTPS" if url.startswith("https:") else
           "plain HTTP, the answer encrypted", attempt, opts["attempts"]))
    status, answer, retry_after = http.post(url, headers, body, ca, timeout_ms)
    http.check_status(status, retry_after)
    return http.parsed(status, tencent.parse_response, answer, info.product_secret)
