"""Outbound webhook deliveries connect to the address that was checked: a DNS answer that changes
after the check (DNS rebinding) never sends a delivery to loopback, a refused address is refused
before any connection, and the request still names the host (Host header, TLS SNI and certificate).
The resolver is a stub for one made-up host; connections are recorded (a public address is
"unreachable" here, loopback reaches a real receiver on 127.0.0.1)."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest
import requests
import urllib3.util.connection
from django.test import override_settings

from apps.webhooks.egress import (
    AddressRefused,
    PinnedAddressAdapter,
    address_is_public,
    host_header,
    post_pinned,
)
from apps.webhooks.models import WebhookDeliveryAttempt
from apps.webhooks.outbound import endpoint_create
from tests.api.conftest import pay
from tests.support import run_durable_tasks
from tests.webhooks.receiver import Receiver

HOST = "hooks.example.com"
PUBLIC = "93.184.216.34"


@pytest.fixture
def network(monkeypatch):
    """``answers``: what each resolution of HOST gives, in turn (the last repeats); ``connects``:
    every (address, port) a connection was opened to. Only loopback is reachable."""
    state: dict[str, list] = {"answers": [], "connects": [], "resolutions": []}
    real_getaddrinfo = socket.getaddrinfo
    real_connect = urllib3.util.connection.create_connection

    def getaddrinfo(host, port, *args, **kwargs):
        if host != HOST:
            return real_getaddrinfo(host, port, *args, **kwargs)
        answers = state["answers"]
        addresses = answers[min(len(state["resolutions"]), len(answers) - 1)]
        state["resolutions"].append(addresses)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
            for a in addresses
        ]

    def create_connection(address, *args, **kwargs):
        state["connects"].append(address)
        host = address[0]
        if host != HOST and not ipaddress.ip_address(host).is_loopback:
            raise OSError(errno.ENETUNREACH, "Network is unreachable (test)")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return state


def test_a_delivery_goes_to_the_checked_address_when_dns_answers_loopback_the_second_time(api, network):
    # given an endpoint on a public host whose DNS turns to loopback after the first answer
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]
        with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=True):
            endpoint, _ = endpoint_create(url=f"http://{HOST}:{port}/hooks", enabled_events=["*"])
        network["answers"] = [[PUBLIC], ["127.0.0.1"]]

        # when
        with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False):
            pay(api)
            run_durable_tasks(handler="apps.webhooks.outbound.delivery_attempt", rounds=1)

    # then: resolved once, connected to that public address only; nothing reached loopback
    (attempt,) = WebhookDeliveryAttempt.objects.filter(delivery__endpoint=endpoint)
    assert network["resolutions"] == [[PUBLIC]]
    assert network["connects"] == [(PUBLIC, port)]
    assert receiver.requests == []
    assert (attempt.succeeded, attempt.status_code) == (False, None)
    assert attempt.error.startswith("ConnectionError: ")


def test_a_host_with_any_non_public_address_is_refused_before_connecting(api, network):
    # given
    with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=True):
        endpoint, _ = endpoint_create(url=f"https://{HOST}/hooks", enabled_events=["*"])
    network["answers"] = [[PUBLIC, "10.0.0.7"]]

    # when
    with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False):
        pay(api)
        run_durable_tasks(handler="apps.webhooks.outbound.delivery_attempt", rounds=1)

    # then
    (attempt,) = WebhookDeliveryAttempt.objects.filter(delivery__endpoint=endpoint)
    assert attempt.error == f"AddressRefused: {HOST} resolves to a non-public address (10.0.0.7)"
    assert network["connects"] == []


def test_the_request_names_the_host_while_the_connection_goes_to_the_pinned_address(network):
    # given a host that resolves to loopback, allowed (development)
    network["answers"] = [["127.0.0.1"]]
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]

        # when
        response = post_pinned(
            f"http://{HOST}:{port}/hooks", data=b"{}", headers={"X-Test": "1"}, timeout=5, allow_private=True
        )

    # then
    (request,) = receiver.requests
    assert response.status_code == 200
    assert (request.headers["Host"], request.headers["X-Test"], request.path) == (
        f"{HOST}:{port}",
        "1",
        "/hooks",
    )
    assert network["connects"] == [("127.0.0.1", port)]


def test_https_uses_the_hostname_for_sni_and_the_certificate_and_the_address_for_the_socket():
    # given
    adapter = PinnedAddressAdapter(hostname=HOST, address=PUBLIC)
    request = requests.Request("POST", f"https://{HOST}/hooks", data=b"{}").prepare()

    # when
    pool = adapter.get_connection_with_tls_context(request, verify=True)
    connection = pool.ConnectionCls(host=pool.host, port=pool.port, **pool.conn_kw)

    # then
    assert (pool.scheme, pool.host, pool.port) == ("https", PUBLIC, 443)
    assert (connection.host, connection.server_hostname, pool.assert_hostname) == (PUBLIC, HOST, HOST)
    assert pool.cert_reqs == "CERT_REQUIRED"


def test_the_pinned_adapter_refuses_another_host_and_any_proxy():
    adapter = PinnedAddressAdapter(hostname=HOST, address=PUBLIC)
    elsewhere = requests.Request("POST", "https://internal.example.com/").prepare()
    with pytest.raises(AddressRefused, match=r"pinned to hooks\.example\.com, not internal\.example\.com"):
        adapter.get_connection_with_tls_context(elsewhere, verify=True)
    mine = requests.Request("POST", f"https://{HOST}/").prepare()
    with pytest.raises(AddressRefused, match="never go through a proxy"):
        adapter.get_connection_with_tls_context(mine, verify=True, proxies={"https": "http://proxy:3128"})


@pytest.mark.parametrize(
    ("url", "header"),
    [
        (f"https://{HOST}/x", HOST),
        (f"https://{HOST}:443/x", HOST),
        (f"https://{HOST}:8443/x", f"{HOST}:8443"),
        (f"http://{HOST}/x", HOST),
        ("http://[2001:db8::1]:8080/x", "[2001:db8::1]:8080"),
    ],
)
def test_host_header(url, header):
    assert host_header(url) == header


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.7", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:7f00:1::1", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:7", False),  # NAT64 around 10.0.0.7
        ("64:ff9b::5db8:d822", True),  # NAT64 around 93.184.216.34
    ],
)
def test_which_addresses_are_public(address, public):
    assert address_is_public(address) is public
