"""The project's own user model, in place from the first migration."""

from django.contrib import admin
from django.contrib.auth import get_user_model

from users.models import User


def test_the_user_model_is_the_projects_own():
    assert get_user_model() is User


def test_users_are_managed_in_the_admin():
    assert admin.site.is_registered(User)
