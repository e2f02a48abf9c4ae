"""WeChat: two products, two channel types, one package.

* ``official.py`` (type ``wechat``): an Official Account (公众号); WeChat
  pushes each message to our webhook, replies go out through the
  customer-service message API within 48 hours.
* ``kf.py`` (type ``wechat_kf``): WeChat customer service (微信客服) run
  from WeCom; the callback only says "there is something new", the messages
  are pulled with ``kf/sync_msg`` and its cursor, replies go out through
  ``kf/send_msg`` after the session is taken over (``service_state``).
* ``api.py``: what they share: wechatpy's clients at ``api_base_url``, the
  access token kept in the channel state for every instance, error codes.

docs/channels/wechat.md has the set-up on WeChat's side for both.
"""
