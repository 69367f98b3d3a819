"""The subscriber-facing web app (Flask): subscribe with double opt-in, one-click unsubscribe
(RFC 8058), and a preferences page. A thin shell over storage, tokens, rendering and delivery.

Routes
  GET  /                       the public lists, each linking to its form; with one, its form
  GET  /l/<slug>               a public list's subscribe form (a private or unknown list: 404)
  POST /subscribe              subscribes to the form's list; always the same answer, in the
                               same time, whether or not the address exists
  GET  /confirm/<token>        a page with one button (mail gateways open every link with a GET)
  POST /confirm/<token>        activates the subscription
  GET  /unsubscribe/<token>    a confirmation page with one button
  POST /unsubscribe/<token>    unsubscribes at once; mail providers POST
                               "List-Unsubscribe=One-Click" here and get a plain 200
  GET  /preferences/<token>    one subscription's topics, hour, time zone, cadence, digest
                               size, pause, unsubscribe
  POST /preferences/<token>
  GET  /digest/<token>         one day's digest as it was sent ("View in browser")
  GET  /digest/<token>/vote/<arxiv id>?v=up|down
                               a paper of that digest with "more / less like this" buttons
                               (a GET records nothing)
  POST /digest/<token>/vote/<arxiv id>
                               records, changes or removes the vote (the signed token authorises it)
  GET  /feed/<token>           the reader's private Atom feed of every paper sent (ETag, 304)
  GET  /preview?topics=...&list=SLUG
                               JSON: the papers the typed topics would get today from that
                               list (the form shows it live)
  GET  /healthz                database reachable?

The signed token is the credential on every page but the sign-up form; every form also
carries a CSRF token (Flask-WTF), except the unsubscribe and vote POSTs: mail providers must
be able to make the first without one, and the second is one tap from an email, where the
token in the URL (the reader's digest of one day, which must hold the paper) authorises it. What the app defends
against, and how, is in docs/security.md.

Modules: :mod:`~digest.web.app` builds the app (headers, errors, ``/healthz``);
:mod:`~digest.web.context` is what every page shares; :mod:`~digest.web.signup`,
:mod:`~digest.web.account` and :mod:`~digest.web.reading` hold the pages;
:mod:`~digest.web.forms` reads their fields and :mod:`~digest.web.mail` sends account mail.
``/metrics`` is :mod:`digest.metrics`.
"""

from digest.web.account import PREFERENCE_SAVES_PER_CLIENT, PREFERENCE_SAVES_PER_SUBSCRIBER
from digest.web.app import create_app, refuse_insecure_production
from digest.web.mail import MAILS_PER_ADDRESS
from digest.web.signup import PREVIEWS_PER_CLIENT

__all__ = [
    "MAILS_PER_ADDRESS",
    "PREFERENCE_SAVES_PER_CLIENT",
    "PREFERENCE_SAVES_PER_SUBSCRIBER",
    "PREVIEWS_PER_CLIENT",
    "create_app",
    "refuse_insecure_production",
]
