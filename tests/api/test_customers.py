from __future__ import annotations


def test_create_retrieve_update_customer(api):
    created = api.post(
        "/api/v1/customers", {"email": "jenny@example.com", "name": "Jenny", "metadata": {"a": "1"}}
    )

    assert created.status_code == 201
    body = created.json()
    assert body["id"].startswith("cus_") and body["object"] == "customer"
    assert (body["email"], body["name"], body["description"], body["metadata"]) == (
        "jenny@example.com",
        "Jenny",
        None,
        {"a": "1"},
    )
    assert api.get(f"/api/v1/customers/{body['id']}").json() == body

    updated = api.post(
        f"/api/v1/customers/{body['id']}", {"name": "Jenny R", "metadata": {"a": "", "b": "2"}}
    )

    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["email"], updated.json()["metadata"]) == (
        "Jenny R",
        "jenny@example.com",
        {"b": "2"},
    )


def test_customer_validation_names_the_param(api):
    bad_email = api.post("/api/v1/customers", {"email": "not-an-email"})
    bad_metadata = api.post("/api/v1/customers", {"metadata": "x"})
    too_many = api.post("/api/v1/customers", {"metadata": {str(i): "v" for i in range(51)}})

    assert bad_email.status_code == 400 and bad_email.json()["error"]["param"] == "email"
    assert bad_metadata.status_code == 400 and bad_metadata.json()["error"]["param"] == "metadata"
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "metadata"


def test_customer_list_by_email_and_unknown_customer(api):
    mine = api.post("/api/v1/customers", {"email": "Listed@Example.com"}).json()

    listed = api.get("/api/v1/customers", {"email": "listed@example.com"}).json()

    assert [c["id"] for c in listed["data"]] == [mine["id"]]
    assert api.get("/api/v1/customers/cus_nope").status_code == 404
    assert api.post("/api/v1/customers/cus_nope", {"name": "x"}).status_code == 404
