"""The serving stack a console route works with, from the app that mounts the console."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from deskpilot.workflows.serving import ServingStack


async def get_stack(request: Request) -> ServingStack:
    """The stack ``create_app`` keeps on ``app.state.parts``."""
    stack: ServingStack = request.app.state.parts
    return stack


StackDep = Annotated[ServingStack, Depends(get_stack)]
