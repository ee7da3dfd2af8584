# frozen_string_literal: true

module IgaiTest
  # The symbol versions a shared library needs from each library it links (its ELF version
  # references, the .gnu.version_r section that `readelf -V` shows), read from the file with
  # plain Ruby: rake native and test:native check the glibc floor of the precompiled gem's
  # extensions with it (the highest GLIBC_x.y any of them needs), test/test_elf_versions.rb
  # checks it against readelf. 64-bit little-endian ELF only (x86_64, aarch64).
  module ElfVersions
    # The highest glibc version igai's extensions may need: RHEL 9, Ubuntu 22.04, Debian 12.
    GLIBC_FLOOR = Gem::Version.new("2.34")
    SHT_GNU_VERNEED = 0x6ffffffe
    SECTION_HEADER = "L<L<Q<Q<Q<Q<L<L<Q<Q<" # name type flags addr offset size link info align entsize
    VERNEED = "S<S<L<L<L<" # version count file aux next
    VERNAUX = "L<S<S<L<L<" # hash flags other name next

    module_function

    # {"libc.so.6" => ["GLIBC_2.2.5", ...], ...} for the ELF file at path.
    def needed(path)
      elf = File.binread(path)
      raise ArgumentError, "#{path}: not a 64-bit little-endian ELF file" unless elf.start_with?("\x7FELF\x02\x01".b)

      sections = section_headers(elf)
      sections.select { |s| s[:type] == SHT_GNU_VERNEED }.each_with_object({}) do |section, result|
        strings = sections.fetch(section[:link])[:offset]
        read_verneed(elf, section[:offset], section[:info], strings, result)
      end
    end

    # The highest GLIBC_x.y version the file needs, as a Gem::Version (nil when none).
    def glibc_floor(path)
      needed(path).values.flatten.grep(/\AGLIBC_\d+(\.\d+)*\z/)
                  .map { |name| Gem::Version.new(name.delete_prefix("GLIBC_")) }.max
    end

    def section_headers(elf)
      offset, = elf.unpack("Q<", offset: 0x28)
      entry_size, count = elf.unpack("S<S<", offset: 0x3A)
      Array.new(count) do |i|
        _, type, _, _, start, size, link, info = elf.unpack(SECTION_HEADER, offset: offset + (i * entry_size))
        { type: type, offset: start, size: size, link: link, info: info }
      end
    end

    # Walks `count` Verneed entries from `at`, each with its chain of Vernaux entries.
    def read_verneed(elf, at, count, strings, result)
      count.times do
        _, aux_count, file, aux, following = elf.unpack(VERNEED, offset: at)
        names = (result[string(elf, strings + file)] ||= [])
        entry = at + aux
        aux_count.times do
          _, _, _, name, next_aux = elf.unpack(VERNAUX, offset: entry)
          names << string(elf, strings + name)
          entry += next_aux
        end
        at += following
      end
    end

    def string(elf, at)
      elf.unpack1("Z*", offset: at)
    end
  end
end
