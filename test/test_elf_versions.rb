# frozen_string_literal: true

require "open3"
require_relative "test_helper"
require_relative "support/elf_versions"

# The ELF reader behind the glibc floor check of the precompiled gem (rake native,
# test:native), on the extension `rake compile` built: it must read what readelf reads, and
# the extension must need no glibc above the floor the README states.
class TestElfVersions < Minitest::Test
  EXTENSION = File.join(IgaiTest::LIB, "igai/igai.so")

  # readelf -V's version needs: {"libc.so.6" => ["GLIBC_2.2.5", ...], ...}.
  def readelf_needs(path)
    output, status = Open3.capture2e("readelf", "-V", "--wide", path)
    assert status.success?, output
    section = output[/^Version needs section .*/m]
    refute_nil section, "readelf -V shows no version needs section:\n#{output}"
    needs = {}
    section.scan(/File: (\S+)|Name: (\S+)/) do |file, name|
      file ? needs[file] = [] : needs[needs.keys.last] << name
    end
    needs
  end

  def test_reads_the_same_version_references_as_readelf
    needs = IgaiTest::ElfVersions.needed(EXTENSION)
    assert_equal readelf_needs(EXTENSION), needs
    assert_includes needs.keys, "libc.so.6"
  end

  def test_the_extension_needs_no_glibc_above_the_floor
    floor = IgaiTest::ElfVersions.glibc_floor(EXTENSION)
    refute_nil floor
    assert_operator floor, :<=, IgaiTest::ElfVersions::GLIBC_FLOOR,
                    "#{EXTENSION} needs GLIBC_#{floor}: the README promises #{IgaiTest::ElfVersions::GLIBC_FLOOR}"
  end

  def test_rejects_what_is_not_a_64_bit_little_endian_elf_file
    error = assert_raises(ArgumentError) { IgaiTest::ElfVersions.needed(__FILE__) }
    assert_match(/not a 64-bit little-endian ELF file/, error.message)
  end
end
