"""``sceneleap hand info|draw``: inspect and picture a hand description."""

from __future__ import annotations

import argparse

import torch


def _parse_joints(text: str | None, hand) -> torch.Tensor:
    """'open', 'zero' or comma/space separated J numbers -> (1, J)."""
    if text is None or text == "open":
        return hand.open_pose[None].clone()
    if text == "zero":
        return torch.zeros(1, hand.dof, dtype=hand.dtype)
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"--q: expected {hand.dof} numbers, 'open' or 'zero', got {text!r}") from None
    if len(values) != hand.dof:
        raise ValueError(f"--q: expected {hand.dof} joint angles, got {len(values)}")
    return torch.tensor([values], dtype=hand.dtype)


def _info(args: argparse.Namespace) -> int:
    from sceneleap_core.hand import HandModel

    hand = HandModel.load(args.hand)
    print(hand.summary())
    return 0


def _draw(args: argparse.Namespace) -> int:
    from sceneleap_core.hand import HandModel
    from sceneleap_core.hand.draw import draw_hand

    hand = HandModel.load(args.hand)
    joints = _parse_joints(args.q, hand)
    hand(joints)  # validates shape, finiteness and limits with a clear message
    out = draw_hand(hand, joints, out=args.out)
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("hand", help="inspect or draw the hand model")
    hand_sub = parser.add_subparsers(dest="hand_command", metavar="ACTION", required=True)
    info = hand_sub.add_parser("info", help="print joints, limits and template sizes")
    info.add_argument("--hand", default="leap_hand_right", help="bundled hand name or description YAML path")
    info.set_defaults(func=_info)
    draw = hand_sub.add_parser("draw", help="render the hand's collision boxes from two views to a PNG")
    draw.add_argument("--hand", default="leap_hand_right", help="bundled hand name or description YAML path")
    draw.add_argument(
        "--q", default="open", help="joint angles (J numbers, comma or space separated), 'open' or 'zero'"
    )
    draw.add_argument("--out", default="hand.png", help="output PNG path")
    draw.set_defaults(func=_draw)
