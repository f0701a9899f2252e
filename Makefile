# sequin_upsert: PGXS build of a C++17 extension.
EXTENSION  = sequin_upsert
MODULE_big = sequin_upsert
OBJS = \
	src/pg_boundary.o \
	src/json_path.o \
	src/value_converter.o \
	src/mapping_source.o \
	src/mapping_compiler.o \
	src/mapping_cache.o \
	src/bookkeeping.o \
	src/batch_applier.o \
	src/staging_trigger.o \
	src/staging_capture.o \
	src/stats.o \
	src/sql_entry.o

DATA = $(wildcard sql/sequin_upsert--*.sql)

# pg_regress inputs are sql/regress_*.sql, their outputs expected/regress_*.out (the
# install scripts sql/sequin_upsert--*.sql share sql/).
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/regress_*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=sequin_upsert

PG_CONFIG ?= pg_config
PG_INCLUDE_SERVER := $(shell $(PG_CONFIG) --includedir-server)

# No LLVM bitcode: the JIT cannot inline C++ and clang need not be installed.
override with_llvm = no

PG_CXXFLAGS = -std=c++17 -fPIC -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-isystem $(PG_INCLUDE_SERVER) -Isrc
ifeq ($(SEQUIN_WERROR),1)
PG_CXXFLAGS += -Werror
endif
SHLIB_LINK = -lstdc++
# Rebuild objects when a header they include changes.
PG_CXXFLAGS += -MMD -MP
EXTRA_CLEAN = $(OBJS:.o=.d)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)


-include $(OBJS:.o=.d)

format:
	clang-format -i src/*.cpp src/*.hpp test/libfuzzer/*.cpp

format-check:
	clang-format --dry-run --Werror src/*.cpp src/*.hpp test/libfuzzer/*.cpp

.PHONY: format format-check

# The regression suite with every backend under valgrind (slow: minutes).
valgrind-check:
	bash test/valgrind/run

.PHONY: valgrind-check
