"""Meta platforms: Messenger, Instagram messaging and the WhatsApp Cloud API.

All three share Meta's webhook and the Graph API, so the common work lives in
two modules and each platform in its own:

* ``webhook.py``: the signature and the split of a delivery into envelopes;
* ``graph.py``: the Graph API client and its errors, and ``MetaChannel``, the
  base class of the three adapters;
* ``messenger.py`` (with ``PageChannel``, the Send API that Instagram shares),
  ``instagram.py``, ``whatsapp.py``: what differs.

Inbound, at ``/webhooks/{channel name}``:

* ``GET`` is the subscription handshake: ``hub.mode=subscribe``, the
  ``hub.verify_token`` compared in constant time with ``verify_token``, and
  ``hub.challenge`` echoed back; a wrong token gets 403.
* ``POST`` carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
  body keyed with app_secret>``, checked on the raw bytes before any parsing
  (missing: 401, wrong: 403, nothing stored). Meta batches: one delivery holds
  several ``entry`` objects, each with several ``messaging`` items (Messenger,
  Instagram) or ``changes`` (WhatsApp, each with lists of ``messages`` and
  ``statuses``). The delivery is split here into one envelope per item, with
  the item's own stable id as external id (``mid``, ``wamid``,
  ``status:<wamid>:<status>``...), and all of them are committed in one group
  before the 200: a redelivery is deduplicated by the intake. A delivery with
  a valid signature that cannot be parsed is kept whole (external id
  ``body:<sha256>``), goes to quarantine with its raw bytes, and is still
  answered 200 - Meta would otherwise retry it for days.

The envelope payload is the item with its context (entry id and time,
WhatsApp's ``metadata`` and the sender's ``contacts`` record) as compact JSON,
so each envelope can be normalized on its own.

What items become:

* customer messages (text, media, location, contacts, interactive replies,
  postbacks, orders, unsupported types) -> ``Message``; media are kept as
  references (WhatsApp media id, Messenger CDN URL) - downloading them needs
  Graph calls and is not done at intake;
* edits and unsends -> ``Message(kind=EDIT)`` pointing at the original;
* reactions -> a message marked automatic ("reaction"): it shows in the
  conversation but never reopens or opens one;
* Messenger ``delivery`` (per mid) and WhatsApp ``statuses`` -> ``StatusUpdate``
  on the outbound message whose provider id matches; Messenger ``read`` and
  mid-less ``delivery`` receipts carry a watermark and update every reply on
  that thread sent before it;
* echoes: a reply omnidesk sent (marked with our ``metadata``, or matching a
  stored provider id) is skipped; a message a person sent from the Page inbox,
  the Instagram app or the WhatsApp Business app is recorded in the
  conversation as an outbound message, because it is part of what the
  customer was told;
* everything else (opt-ins, referrals, account and template notices, calls)
  -> ``Skip`` with the reason, kept in the intake table.

Outbound replies go through the Graph API at ``{api_base_url}/{api_version}``:
the Send API (``/{page_id}/messages`` or ``/me/messages``) for Messenger and
Instagram, ``/{phone_number_id}/messages`` for WhatsApp. WhatsApp refuses a
free-form message more than 24 hours after the customer last wrote (error
131047): the adapter checks the window first and fails the reply with a
reason an agent can act on, or sends the configured approved template.
"""
