"""The kernels' view of a run: :class:`~orchestra.kernels.state.Inputs`, ``State`` and ``Outputs``
as numba StructRefs, one pointer each.

Python keeps the three NamedTuples (the engine, the live loop's checkpoints and the tests read
and write their arrays); the compiled kernels take these references to the same arrays instead.
The reason is compile time. A NamedTuple of ~100 arrays is passed by value: every function that
takes one gets ~900 LLVM arguments, and every variable holding it an aggregate LLVM's SROA pass
must split. Measured on this machine: a function taking the three tuples costs ~1 s to compile
even with an empty body, and a helper ~0.4 s (the cost grows faster than linearly with the number
of arrays, however they are grouped into tuples). A StructRef is one pointer to a heap record of
the same arrays, so the bar loop and its ~40 helpers compile at the cost of their bodies: the
bar-loop chain went from ~18 s to ~8 s with an empty cache.

The arrays are shared, not copied: the kernels' writes are the tuples' writes. A reference holds
a reference count on each array, so it keeps them alive; :class:`KernelArgs` keeps the
references of one ``(inputs, state, outputs)`` triple and rebuilds one when the engine swaps its
tuple (a restore, a new bar in the live loop).

The bar loop is compiled without numba's reference counting (:mod:`orchestra.kernels.jit`), which
numba's own StructRef attributes and unboxing need; these types bring their own (field reads by
a load of the record's address, an unboxing that gives back the reference it takes). Kernels
reading a field in an inner loop bind it to a local first (``units = st.units``): a field read
is a load through the pointer, which LLVM cannot hoist out of a loop that writes to an array.
"""

from __future__ import annotations

from typing import Any

from numba import njit, typeof, types
from numba.core import cgutils, imputils
from numba.core.datamodel import default_manager, models
from numba.core.runtime.nrtdynmod import _meminfo_struct_type
from numba.core.typing.templates import AttributeTemplate
from numba.experimental import structref
from numba.extending import (
    NativeValue,
    box,
    infer_getattr,
    intrinsic,
    lower_getattr_generic,
    lower_setattr_generic,
    unbox,
)

from orchestra.kernels.state import Inputs, Outputs, State


class _Ref(types.StructRef):
    """A StructRef type whose fields are the NamedTuple's, in its order."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class InputsRef(_Ref):
    """:class:`~orchestra.kernels.state.Inputs` by reference."""


class StateRef(_Ref):
    """:class:`~orchestra.kernels.state.State` by reference."""


class OutputsRef(_Ref):
    """:class:`~orchestra.kernels.state.Outputs` by reference."""


def _data_pointer(context, builder, ref_type, value):
    """The pointer to a reference's fields: its MemInfo's ``data``, read in place.

    numba's own StructRef attributes read it through the runtime (``NRT_MemInfo_data_fast``,
    the same load), which refuses to compile in a function without reference counting; the bar
    loop is compiled without it (:mod:`orchestra.kernels.jit`: counting the references of the
    arrays it reads, at every call, cost ~25 % of its time), so these types read the field
    themselves."""
    meminfo = cgutils.create_struct_proxy(ref_type)(context, builder, value=value).meminfo
    record = builder.bitcast(meminfo, _meminfo_struct_type.as_pointer())
    data = builder.load(cgutils.gep(builder, record, 0, 3))
    payload = context.data_model_manager[ref_type.get_data_type()].get_value_type()
    return builder.bitcast(data, payload.as_pointer())


def _register(ref_class: type) -> None:
    """numba's ``structref.register`` for ``ref_class``, with field reads and writes that work
    with and without reference counting (see :func:`_data_pointer`)."""
    default_manager.register(ref_class, models.StructRefModel)

    @infer_getattr
    class _Attributes(AttributeTemplate):
        key = ref_class

        def generic_resolve(self, typ, attr):
            return typ.field_dict.get(attr)

    @lower_getattr_generic(ref_class)
    def _get(context, builder, typ, value, attr):
        data = cgutils.create_struct_proxy(typ.get_data_type())(
            context, builder, ref=_data_pointer(context, builder, typ, value)
        )
        return imputils.impl_ret_borrowed(
            context, builder, typ.field_dict[attr], getattr(data, attr)
        )

    @lower_setattr_generic(ref_class)
    def _set(context, builder, sig, args, attr):
        if not context.enable_nrt:  # it would store an uncounted array the record later frees
            raise TypeError(
                f"{ref_class.__name__}.{attr} set in a kernel without reference counting"
            )
        ref_type, value_type = sig.args
        ref, value = args
        data = cgutils.create_struct_proxy(ref_type.get_data_type())(
            context, builder, ref=_data_pointer(context, builder, ref_type, ref)
        )
        field_type = ref_type.field_dict[attr]
        cast = context.cast(builder, value, value_type, field_type)
        old = getattr(data, attr)
        context.nrt.incref(builder, value_type, cast)
        context.nrt.decref(builder, value_type, old)  # last: the new value may be the old one
        setattr(data, attr, cast)


for _ref_class in (InputsRef, StateRef, OutputsRef):
    _register(_ref_class)


class InputsProxy(structref.StructRefProxy):
    """Python's handle on an :class:`InputsRef` (passed back to the kernels only)."""


class StateProxy(structref.StructRefProxy):
    """Python's handle on a :class:`StateRef` (passed back to the kernels only)."""


class OutputsProxy(structref.StructRefProxy):
    """Python's handle on an :class:`OutputsRef` (passed back to the kernels only)."""


def _define_boxing(ref_class: type, proxy_class: type) -> None:
    """numba's ``structref.define_boxing``, with an unboxing that stays balanced in a function
    compiled without reference counting.

    Unboxing takes a reference to the proxy's MemInfo. With counting on, the CPython wrapper
    gives it back after the call; without, nothing would, and every call would leak one (the run's
    arrays never freed). So when counting is off, the unboxing gives it back itself, in the
    value's clean-up, which the wrapper runs after the call either way (the proxy, held by the
    caller, keeps the record alive meanwhile)."""
    make_proxy = proxy_class._numba_box_  # type: ignore[attr-defined]
    pointer = types.MemInfoPointer(types.voidptr)

    @box(ref_class)
    def _box(typ, val, c):
        meminfo = cgutils.create_struct_proxy(typ)(c.context, c.builder, value=val).meminfo
        boxed = c.box(pointer, meminfo)
        ctor = c.pyapi.unserialize(c.pyapi.serialize_object(make_proxy))
        typ_obj = c.pyapi.unserialize(c.pyapi.serialize_object(typ))
        res = c.pyapi.call_function_objargs(ctor, [typ_obj, boxed])
        for obj in (ctor, typ_obj, boxed):
            c.pyapi.decref(obj)
        return res

    @unbox(ref_class)
    def _unbox(typ, obj, c):
        meminfo_obj = c.pyapi.object_getattr_string(obj, "_meminfo")
        meminfo = c.unbox(pointer, meminfo_obj).value  # takes a reference
        c.pyapi.decref(meminfo_obj)
        ref = cgutils.create_struct_proxy(typ)(c.context, c.builder)
        ref.meminfo = meminfo
        cleanup = None
        if not c.context.enable_nrt:
            builder = c.builder

            def cleanup() -> None:
                release = cgutils.get_or_insert_function(
                    builder.module,
                    cgutils.ir.FunctionType(cgutils.ir.VoidType(), [cgutils.voidptr_t]),
                    "NRT_decref",
                )
                builder.call(release, [meminfo])

        return NativeValue(ref._getvalue(), cleanup=cleanup)


_define_boxing(InputsRef, InputsProxy)
_define_boxing(StateRef, StateProxy)
_define_boxing(OutputsRef, OutputsProxy)

_REF_TYPES = {Inputs: InputsRef, State: StateRef, Outputs: OutputsRef}


def ref_type(record_type: Any) -> types.StructRef:
    """The StructRef type the kernels see for a NamedTuple of numba type ``record_type`` (a
    ``types.NamedTuple``)."""
    fields = record_type.instance_class._fields
    return _REF_TYPES[record_type.instance_class](list(zip(fields, record_type.types, strict=True)))


def ref_types(inputs: Inputs, state: State, outputs: Outputs) -> tuple[Any, Any, Any]:
    """The kernels' argument types for these tuples, without building the references (the
    precompile child compiles the bar loop from them: :mod:`orchestra.precompile`)."""
    return tuple(ref_type(typeof(x)) for x in (inputs, state, outputs))  # type: ignore[return-value]


@intrinsic
def _to_ref(typingctx, record):
    """A StructRef holding the NamedTuple's arrays, field for field (the record's payload has
    the tuple's members in its order, so each is stored in place and gains the reference the
    record keeps: the same as ``structref.new`` and a ``ref.name = record.name`` per field, in
    one step that numba does not type field by field)."""
    if not (isinstance(record, types.BaseNamedTuple) and record.instance_class in _REF_TYPES):
        return None
    from numba.experimental.jitclass.base import imp_dtor

    target = ref_type(record)

    def codegen(context, builder, sig, args):
        payload_type = target.get_data_type()
        alloc_type = context.data_model_manager[payload_type].get_value_type()
        meminfo = context.nrt.meminfo_alloc_dtor(
            builder,
            context.get_constant(types.uintp, context.get_abi_sizeof(alloc_type)),
            imp_dtor(context, builder.module, target),
        )
        pointer = builder.bitcast(
            context.nrt.meminfo_data(builder, meminfo), alloc_type.as_pointer()
        )
        data = cgutils.create_struct_proxy(payload_type)(context, builder, ref=pointer)
        for i, (name, field_type) in enumerate(
            zip(record.instance_class._fields, record.types, strict=True)
        ):
            value = builder.extract_value(args[0], i)
            context.nrt.incref(builder, field_type, value)
            setattr(data, name, value)
        ref = context.make_helper(builder, target)
        ref.meminfo = meminfo
        return ref._getvalue()

    return target(record), codegen


@njit(cache=True)
def inputs_ref(inputs):
    """``inputs`` (:class:`~orchestra.kernels.state.Inputs`) as an :class:`InputsRef`."""
    return _to_ref(inputs)


@njit(cache=True)
def state_ref(state):
    """``state`` (:class:`~orchestra.kernels.state.State`) as a :class:`StateRef`."""
    return _to_ref(state)


@njit(cache=True)
def outputs_ref(outputs):
    """``outputs`` (:class:`~orchestra.kernels.state.Outputs`) as an :class:`OutputsRef`."""
    return _to_ref(outputs)


def as_refs(inputs: Inputs, state: State, outputs: Outputs) -> tuple[Any, Any, Any]:
    """The kernels' arguments for the three tuples (new references at each call)."""
    return inputs_ref(inputs), state_ref(state), outputs_ref(outputs)


class KernelArgs:
    """The references of the last ``(inputs, state, outputs)`` triple it was given, each rebuilt
    only when its tuple is another object (a reference costs ~10 µs to build: the live loop's
    inputs change at every bar, its state and outputs seldom, a backtest's never)."""

    _BUILD = (inputs_ref, state_ref, outputs_ref)

    def __init__(self) -> None:
        self._tuples: list[Any] = [None, None, None]
        self._refs: list[Any] = [None, None, None]

    def __call__(self, inputs: Inputs, state: State, outputs: Outputs) -> tuple[Any, Any, Any]:
        for i, record in enumerate((inputs, state, outputs)):
            if self._tuples[i] is not record:
                self._refs[i] = self._BUILD[i](record)
                self._tuples[i] = record
        return self._refs[0], self._refs[1], self._refs[2]
