#!/bin/sh
# Regenerate the Python modules from oip_v2.proto (run from anywhere; needs grpcio-tools).
#
# The generated module registers its messages in a private descriptor pool instead of protobuf's
# default one: tritonclient.grpc (and any other OIP client) registers the same fully qualified
# names (inference.ModelInferRequest, ...) from its own copy of the protocol, and two files
# defining one name in the default pool make the second import fail. Only the service path
# matters on the wire, so the agent and such a client can then live in one process.
set -eu
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-python}
"$PY" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. agent/serving/grpc/oip_v2.proto
sed -i 's/_descriptor_pool\.Default()\.AddSerializedFile/_descriptor_pool.DescriptorPool().AddSerializedFile/' \
  agent/serving/grpc/oip_v2_pb2.py
grep -q 'DescriptorPool().AddSerializedFile' agent/serving/grpc/oip_v2_pb2.py
