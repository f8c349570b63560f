def test_the_login_page_renders(anon_client):
    response = anon_client.get("/account/login/")
    assert response.status_code == 200
    assert b"Log in" in response.content
