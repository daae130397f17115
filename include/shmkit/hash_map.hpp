// SPDX-License-Identifier: MIT
// HashMap: an unordered map whose buckets and nodes live in an Arena, usable from every
// process that joined it (libstdc++'s std::unordered_map keeps raw pointers in its nodes).
//
//   using Map = shmkit::HashMap<std::uint64_t, double>;
//   Map* m = arena.find_or_construct<Map>("prices", shmkit::Allocator<char>(arena));
//   m->insert_or_assign(42, 1.5);
//   if (const double* v = m->find(42)) ...
//
// Separate chaining: a vector of bucket heads and one node per element, linked by Ptr<T>, so
// an element never moves once inserted (pointers to it stay valid until it is erased).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "shmkit/allocator.hpp"
#include "shmkit/offset_ptr.hpp"
#include "shmkit/string.hpp"

namespace shmkit {

/// Hashes keys; transparent for String / std::string_view, so a String-keyed map can be
/// searched with a std::string_view.
template <class K>
struct Hash : std::hash<K> {};
template <>
struct Hash<String> {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// An unordered map in an arena. K and V must be storable in shared memory (no raw pointers;
/// String, Offset<T>, Ptr<T> and trivially copyable values are). Like std::unordered_map, not
/// thread-safe: guard one shared by several threads or processes with a lock.
template <class K, class V, class H = Hash<K>, class Eq = std::equal_to<>>
class HashMap {
  struct Node {
    Ptr<Node> next;
    std::size_t hash;
    std::pair<const K, V> item;
  };
  using NodeAlloc = Allocator<Node>;
  using NodeTraits = std::allocator_traits<NodeAlloc>;

 public:
  using key_type = K;
  using mapped_type = V;
  using value_type = std::pair<const K, V>;
  using allocator_type = Allocator<char>;

  explicit HashMap(const allocator_type& alloc) : buckets_(16, Ptr<Node>(), Allocator<Ptr<Node>>(alloc)) {}
  HashMap(const HashMap&) = delete;
  HashMap& operator=(const HashMap&) = delete;
  ~HashMap() { clear(); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// The value for `key`, or nullptr.
  template <class Q>
  V* find(const Q& key) noexcept {
    Node* n = find_node(key, H{}(key));
    return n != nullptr ? &n->item.second : nullptr;
  }
  template <class Q>
  const V* find(const Q& key) const noexcept {
    return const_cast<HashMap*>(this)->find(key);
  }
  template <class Q>
  bool contains(const Q& key) const noexcept {
    return find(key) != nullptr;
  }

  /// Inserts (key, value) or replaces the value. Returns true if it inserted.
  template <class KK, class VV>
  bool insert_or_assign(KK&& key, VV&& value) {
    const std::size_t h = H{}(key);
    if (Node* n = find_node(key, h)) {
      n->item.second = std::forward<VV>(value);
      return false;
    }
    if (size_ + 1 > buckets_.size()) rehash(buckets_.size() * 2);
    NodeAlloc alloc(buckets_.get_allocator());
    Ptr<Node> node = NodeTraits::allocate(alloc, 1);
    try {
      ::new (static_cast<void*>(node.get()))
          Node{Ptr<Node>(), h, value_type(std::forward<KK>(key), std::forward<VV>(value))};
    } catch (...) {
      NodeTraits::deallocate(alloc, node, 1);
      throw;
    }
    Ptr<Node>& head = buckets_[h % buckets_.size()];
    node->next = head.get();
    head = node.get();
    ++size_;
    return true;
  }

  /// Removes `key`. Returns true if it was there.
  template <class Q>
  bool erase(const Q& key) {
    const std::size_t h = H{}(key);
    Ptr<Node>* link = &buckets_[h % buckets_.size()];
    while (Node* n = link->get()) {
      if (n->hash == h && Eq{}(n->item.first, key)) {
        *link = n->next.get();
        destroy(n);
        --size_;
        return true;
      }
      link = &n->next;
    }
    return false;
  }

  void clear() {
    for (Ptr<Node>& head : buckets_) {
      while (Node* n = head.get()) {
        head = n->next.get();
        destroy(n);
      }
    }
    size_ = 0;
  }

  /// Calls f(key, value) for every element, in no particular order.
  template <class F>
  void for_each(F&& f) {
    for (Ptr<Node>& head : buckets_) {
      for (Node* n = head.get(); n != nullptr; n = n->next.get()) f(n->item.first, n->item.second);
    }
  }

 private:
  template <class Q>
  Node* find_node(const Q& key, std::size_t h) const noexcept {
    for (Node* n = buckets_[h % buckets_.size()].get(); n != nullptr; n = n->next.get()) {
      if (n->hash == h && Eq{}(n->item.first, key)) return n;
    }
    return nullptr;
  }

  void destroy(Node* n) {
    NodeAlloc alloc(buckets_.get_allocator());
    n->~Node();
    NodeTraits::deallocate(alloc, Ptr<Node>(n), 1);
  }

  void rehash(std::size_t count) {
    std::vector<Ptr<Node>, Allocator<Ptr<Node>>> next(count, Ptr<Node>(), buckets_.get_allocator());
    for (Ptr<Node>& head : buckets_) {
      while (Node* n = head.get()) {
        head = n->next.get();
        Ptr<Node>& slot = next[n->hash % count];
        n->next = slot.get();
        slot = n;
      }
    }
    buckets_.swap(next);
  }

  std::vector<Ptr<Node>, Allocator<Ptr<Node>>> buckets_;  // chain heads
  std::size_t size_ = 0;
};

}  // namespace shmkit
