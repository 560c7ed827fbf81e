"""chanlite: the Channels 1.x model — consumers, channels, groups, layers — for any
Python project, behind a Starlette interface server."""

from __future__ import annotations

from .app import Chanlite as Chanlite
from .channels import Channel as Channel
from .channels import Group as Group
from .exceptions import ChanliteError as ChanliteError
from .exceptions import ChannelFull as ChannelFull
from .exceptions import ConsumeLater as ConsumeLater
from .exceptions import DenyConnection as DenyConnection
from .exceptions import InvalidChannelName as InvalidChannelName
from .exceptions import LayerError as LayerError
from .exceptions import MessageTooLarge as MessageTooLarge
from .layers import get_layer as get_layer
from .messages import Message as Message
from .ordering import enforce_ordering as enforce_ordering
from .routing import Routes as Routes
from .routing import consumer as consumer
from .routing import include as include
from .routing import route as route
from .sessions import channel_session as channel_session
from .sessions import http_session as http_session

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "Chanlite",
    "ChanliteError",
    "ChannelFull",
    "ConsumeLater",
    "DenyConnection",
    "Group",
    "InvalidChannelName",
    "LayerError",
    "Message",
    "MessageTooLarge",
    "Routes",
    "channel_session",
    "consumer",
    "enforce_ordering",
    "get_layer",
    "http_session",
    "include",
    "route",
]
